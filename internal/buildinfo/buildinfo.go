// Package buildinfo says which build of tailor is running: the module
// version and VCS revision the Go toolchain stamped into the binary
// (runtime/debug.ReadBuildInfo), or the version given at link time.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// version and revision, when set at link time (-ldflags "-X
// github.com/tailorcdp/tailor/internal/buildinfo.version=v1.2.3 -X
// ...revision=abc123", as the Dockerfile does, whose build sees no .git),
// take the place of the module version and the stamped revision; they are
// never written at run time.
var version, revision string

// Info describes a build.
type Info struct {
	// Version is the module version (v1.2.3, or a pseudo-version), the
	// link-time version, or "dev" when nothing is known.
	Version string
	// Revision is the VCS revision the binary was built from, with
	// "-modified" when the work tree had changes; "" when unknown.
	Revision string
	// GoVersion is the Go toolchain that built it.
	GoVersion string
}

// Read returns the running binary's build information.
func Read() Info {
	bi, _ := debug.ReadBuildInfo()
	info := fromBuildInfo(bi, version)
	if revision != "" {
		info.Revision = revision
	}
	return info
}

// fromBuildInfo returns the Info of bi (nil when the binary carries
// none), with linked in place of the module version when set.
func fromBuildInfo(bi *debug.BuildInfo, linked string) Info {
	info := Info{Version: linked, GoVersion: runtime.Version()}
	if bi == nil {
		if info.Version == "" {
			info.Version = "dev"
		}
		return info
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		info.Version = bi.Main.Version
	}
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified && info.Revision != "" {
		info.Revision += "-modified"
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	return info
}

// String is the line `tailor version` prints.
func (i Info) String() string {
	s := "tailor " + i.Version
	if i.Revision != "" {
		s += " (revision " + i.Revision + ")"
	}
	return s + " " + i.GoVersion
}
