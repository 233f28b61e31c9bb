package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	for _, tc := range []struct {
		name   string
		bi     *debug.BuildInfo
		linked string
		want   Info
	}{
		{"nothing known", nil, "", Info{Version: "dev", GoVersion: "go1.x"}},
		{"linked only", nil, "v9.9.9", Info{Version: "v9.9.9", GoVersion: "go1.x"}},
		{"module version", &debug.BuildInfo{GoVersion: "go1.25.0", Main: debug.Module{Version: "v1.2.3"}},
			"", Info{Version: "v1.2.3", GoVersion: "go1.25.0"}},
		{"source build with VCS", &debug.BuildInfo{GoVersion: "go1.25.0", Main: debug.Module{Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}},
			"", Info{Version: "dev", Revision: "abc123-modified", GoVersion: "go1.25.0"}},
		{"linked beats module", &debug.BuildInfo{GoVersion: "go1.25.0", Main: debug.Module{Version: "v1.2.3"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "false"}}},
			"v2.0.0", Info{Version: "v2.0.0", Revision: "abc123", GoVersion: "go1.25.0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := fromBuildInfo(tc.bi, tc.linked)
			if tc.bi == nil {
				got.GoVersion = "go1.x" // the running toolchain's
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
