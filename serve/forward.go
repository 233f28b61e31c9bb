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
	if len(ctx.Request.Header.Peek(headerForwarded)) > 0 {
		return false
	}
	return s.send(ctx, key, "1", nil)
}

// forwardedMerged marks a request sent on to the holder of the profile
// its key was merged into.
const forwardedMerged = "merged"

// forwardMerged sends a request about a key whose profile was merged into
// the profile of into on to into's holder, as rewrite changes it (another
// path, another body). It may follow one plain forward (the key's holder
// found the merge), never another of its own, so it cannot loop.
func (s *Server) forwardMerged(ctx *fasthttp.RequestCtx, into string, rewrite func(*fasthttp.Request)) bool {
	if string(ctx.Request.Header.Peek(headerForwarded)) == forwardedMerged {
		return false
	}
	return s.send(ctx, into, forwardedMerged, rewrite)
}

// send sends the request on to key's holder, marked with mark, changed by
// rewrite when it is not nil.
func (s *Server) send(ctx *fasthttp.RequestCtx, key, mark string, rewrite func(*fasthttp.Request)) bool {
	if key == "" {
		return false
	}
	addr, local := s.profiles.Owner(key)
	if local || addr == "" {
		return false
	}
	return s.sendTo(ctx, addr, mark, rewrite)
}

// sendTo sends the request on to the instance at addr, marked with
// mark, changed by rewrite when it is not nil; false when it could not,
// leaving the request to be answered here.
func (s *Server) sendTo(ctx *fasthttp.RequestCtx, addr, mark string, rewrite func(*fasthttp.Request)) bool {
	c, _ := s.fwd.clients.LoadOrStore(addr, &fasthttp.HostClient{
		Addr: addr, ReadTimeout: forwardTimeout, WriteTimeout: forwardTimeout, MaxConns: 256,
		// The path goes on as it came (a profile key may hold "%2F.."),
		// not as fasthttp normalises it.
		DisablePathNormalizing: true,
		Dial:                   func(a string) (net.Conn, error) { return net.DialTimeout("tcp", a, forwardTimeout) },
	})
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	ctx.Request.CopyTo(req)
	if rewrite != nil {
		rewrite(req)
	}
	req.URI().DisablePathNormalizing = true
	req.SetHost(addr)
	req.Header.Set(headerForwarded, mark)
	if err := c.(*fasthttp.HostClient).DoTimeout(req, &ctx.Response, forwardTimeout); err != nil {
		s.log.Warn("could not send the request on to the instance holding it; answering here", "path", string(ctx.Path()), "instance", addr, "err", err)
		ctx.Response.Reset()
		return false
	}
	return true
}

// headerReadFrom marks an answer read here from a copy of the key's
// partition store rather than from the store that applies it: "standby"
// (a standby replica, answering because the owner could not be reached)
// or "stale" (a store kept readable through a lost group session).
// docs/kafka.md says how far behind each may be.
const headerReadFrom = "X-Tailor-Read-From"

// readSource says where a read of key is answered from ("" for the store
// that applies it); stream.Reads implements it.
type readSource interface {
	ReadFrom(key string) string
}

// markRead sets headerReadFrom on an answer about key read here from a
// copy.
func (s *Server) markRead(ctx *fasthttp.RequestCtx, key string) {
	if rs, ok := s.profiles.(readSource); ok {
		if from := rs.ReadFrom(key); from != "" {
			ctx.Response.Header.Set(headerReadFrom, from)
		}
	}
}
