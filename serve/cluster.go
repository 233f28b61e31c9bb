package serve

import (
	"context"
	"time"

	"github.com/valyala/fasthttp"
)

// clusterTimeout bounds GET /v1/cluster's question to the group
// coordinator.
const clusterTimeout = 10 * time.Second

// cluster answers GET /v1/cluster (read keys): the instances of the
// group, their partitions and standby replicas, and this instance's own.
func (s *Server) cluster(ctx *fasthttp.RequestCtx) {
	if !s.readAllowed(ctx) {
		return
	}
	if s.cfg.Cluster == nil {
		writeError(ctx, fasthttp.StatusNotFound, "", "no cluster view: this server is not part of an engine")
		return
	}
	c, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	v, err := s.cfg.Cluster(c)
	if err != nil {
		writeError(ctx, fasthttp.StatusServiceUnavailable, "", "describe the cluster: "+err.Error())
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, v)
}

// destinations serves the delivery destinations with their figures.
func (s *Server) destinations(ctx *fasthttp.RequestCtx) {
	if !s.readAllowed(ctx) {
		return
	}
	if s.cfg.Destinations == nil {
		writeError(ctx, fasthttp.StatusNotFound, "", "no destinations: this server is not part of an engine")
		return
	}
	c, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	v, err := s.cfg.Destinations(c)
	if err != nil {
		writeError(ctx, fasthttp.StatusServiceUnavailable, "", "describe the destinations: "+err.Error())
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, v)
}
