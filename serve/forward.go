package serve

import (
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// Several instances split the partitions; a profile or decide call for a
// key whose partition another instance holds is sent on to that instance
// (the owner published its address with its partitions' statistics) and
// its answer returned as is. A request that was sent on already is
// answered where it lands, so a stale owner cannot make it loop.

// headerForwarded marks a request one instance sent on to another.
const headerForwarded = "X-Tailor-Forwarded"

// forwardTimeout bounds a request sent on to another instance.
const forwardTimeout = 5 * time.Second

// forwarder keeps one client per instance requests are sent on to.
type forwarder struct {
	clients sync.Map // address -> *fasthttp.HostClient
}

// forward sends the request for key on to its owner and reports whether
// it did (and answered ctx); false leaves the request to be answered here.
func (s *Server) forward(ctx *fasthttp.RequestCtx, key string) bool {
	return s.forwardAs(ctx, key, "")
}

// forwardAs is forward, sending the request with uri as its path and
// query when uri is not empty.
func (s *Server) forwardAs(ctx *fasthttp.RequestCtx, key, uri string) bool {
	if key == "" || len(ctx.Request.Header.Peek(headerForwarded)) > 0 {
		return false
	}
	addr, local := s.profiles.Owner(key)
	if local || addr == "" {
		return false
	}
	c, _ := s.fwd.clients.LoadOrStore(addr, &fasthttp.HostClient{
		Addr: addr, ReadTimeout: forwardTimeout, WriteTimeout: forwardTimeout, MaxConns: 256,
		Dial: func(a string) (net.Conn, error) { return net.DialTimeout("tcp", a, forwardTimeout) },
	})
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	ctx.Request.CopyTo(req)
	if uri != "" {
		req.SetRequestURI(uri)
	}
	req.SetHost(addr)
	req.Header.Set(headerForwarded, "1")
	if err := c.(*fasthttp.HostClient).DoTimeout(req, &ctx.Response, forwardTimeout); err != nil {
		s.log.Warn("could not send the request on to the instance holding the key; answering here", "key", key, "instance", addr, "err", err)
		ctx.Response.Reset()
		return false
	}
	return true
}
