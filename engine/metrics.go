package engine

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tailorcdp/tailor/internal/buildinfo"
)

// registerBuildInfo registers tailor_build_info{version,revision,goversion} 1.
func registerBuildInfo(reg prometheus.Registerer) {
	bi := buildinfo.Read()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tailor_build_info",
		Help: "Always 1; its labels say which build runs: the module version (dev when unknown), the VCS revision and the Go version.",
	}, []string{"version", "revision", "goversion"})
	g.WithLabelValues(bi.Version, bi.Revision, bi.GoVersion).Set(1)
	reg.MustRegister(g)
}
