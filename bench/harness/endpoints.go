package harness

import (
	"bytes"
	"fmt"
	"io"
	"sync/atomic"

	"google.golang.org/grpc"
)

// endpoints are the servers a run loads, started on first use.
type endpoints struct {
	cfg    *Config
	sg     *inproc
	sgGRPC []*grpc.ClientConn
	// sgAudit is the audit shape's second in-process scopegate, which
	// writes the default audit log; started on first use.
	sgAudit     *inproc
	sgAuditGRPC []*grpc.ClientConn
	newInproc   func(auditTo io.Writer) (*inproc, error)
	auditReader *countingReader
	noopGRPC    []*grpc.ClientConn
	noopSrv     *noopServer
	noopHTTP    *noopHTTP
	upstream    *noopHTTP
	nginx       *nginxProc
	https       []*httpTarget
	// prime is the ext_authz endpoint through which every series primes
	// the token cache.
	prime *endpoint
	// dpop is the bound tokens and proofs of the dpop shape.
	dpop *dpopSet
}

// needsInproc reports whether the run needs scopegate in-process: without
// --target, always.
func (c *Config) needsInproc() bool { return c.Target == "" }

func newEndpoints(cfg *Config, addr string, sg *inproc, rep *Report) (*endpoints, error) {
	e := &endpoints{cfg: cfg, sg: sg}
	e.prime = &endpoint{name: serverScopegate, verify: true, fresh: true}
	if sg != nil {
		e.prime.engine = sg.srv.Engine()
	}
	if cfg.API != APIDecide || len(cfg.series()) > 1 {
		conns, err := dial(addr, cfg.Conns)
		if err != nil {
			return nil, err
		}
		e.sgGRPC = conns
		e.prime.conns = conns
	}
	if cfg.API == APIDecide && cfg.Noop && cfg.has(ShapeGRPC) {
		rep.note("--noop not applied: --api decide has no gRPC to compare with")
	}
	return e, nil
}

func (e *endpoints) close() {
	closeAll(e.sgGRPC)
	closeAll(e.noopGRPC)
	closeAll(e.sgAuditGRPC)
	if e.sgAudit != nil {
		e.sgAudit.stop()
		e.auditReader.close()
	}
	for _, h := range e.https {
		h.close()
	}
	if e.nginx != nil {
		e.nginx.stop()
	}
	for _, s := range []*noopHTTP{e.noopHTTP, e.upstream} {
		if s != nil {
			s.stop()
		}
	}
	if e.noopSrv != nil {
		e.noopSrv.stop()
	}
}

func (e *endpoints) httpTarget(addr string) *httpTarget {
	t := newHTTPTarget(addr, e.cfg.Concurrency)
	e.https = append(e.https, t)
	return t
}

func (e *endpoints) startNoopHTTP() error {
	if e.noopHTTP != nil {
		return nil
	}
	var err error
	e.noopHTTP, err = startNoopHTTP(e.cfg.Batch)
	if err != nil {
		return fmt.Errorf("start the no-op HTTP server: %w", err)
	}
	return nil
}

// forSeries returns scopegate's endpoint and the floor's (nil: none) for
// one (shape, API) series.
func (e *endpoints) forSeries(shapeName, api string) (*endpoint, *endpoint, error) {
	cfg := e.cfg
	// Only the grpc and cold shapes send never-seen tokens (--miss-rate):
	// every other shape measures its own path with cached tokens.
	fresh := shapeName == ShapeGRPC || shapeName == ShapeCold
	sg := &endpoint{name: serverScopegate, verify: true, fresh: fresh, conns: e.sgGRPC}
	if e.sg != nil {
		sg.engine = e.sg.srv.Engine()
	}
	switch shapeName {
	case ShapeGRPC:
		if e.sg != nil && cfg.SoakReload > 0 {
			sg.reload, sg.reloadEvery = e.sg.reload, cfg.SoakReload
		}
		if !cfg.Noop || api == APIDecide {
			return sg, nil, nil
		}
		if e.noopSrv == nil {
			ns, err := startNoop()
			if err != nil {
				return nil, nil, fmt.Errorf("start the no-op server: %w", err)
			}
			e.noopSrv = ns
			if e.noopGRPC, err = dial(ns.addr, cfg.Conns); err != nil {
				return nil, nil, err
			}
		}
		return sg, &endpoint{name: serverNoop, conns: e.noopGRPC}, nil
	case ShapeFull:
		s, floor, err := e.forSeries(ShapeGRPC, api)
		if s != nil {
			s.fresh = false // the owners are the reused tokens' subjects
		}
		return s, floor, err
	case ShapeCold:
		return sg, &endpoint{name: floorCached, conns: e.sgGRPC, verify: true}, nil
	case ShapeDPoP:
		sg.dpop = e.dpop
		return sg, &endpoint{name: floorBearer, conns: e.sgGRPC, verify: true}, nil
	case ShapeReload:
		every := cfg.SoakReload
		if every == 0 {
			every = DefaultReloadEvery
		}
		sg.reload, sg.reloadEvery = e.sg.reload, every
		return sg, &endpoint{name: floorStill, conns: e.sgGRPC, verify: true, engine: sg.engine}, nil
	case ShapeAudit:
		if e.sgAudit == nil {
			if e.newInproc == nil {
				return nil, nil, fmt.Errorf("the %s shape needs the in-process server", ShapeAudit)
			}
			r, w := io.Pipe()
			e.auditReader = newCountingReader(r)
			in, err := e.newInproc(w)
			if err != nil {
				e.auditReader.close()
				return nil, nil, err
			}
			e.sgAudit = in
			if e.sgAuditGRPC, err = dial(in.addr, cfg.Conns); err != nil {
				return nil, nil, err
			}
		}
		a := &endpoint{name: serverScopegate, verify: true, conns: e.sgAuditGRPC, engine: e.sgAudit.srv.Engine()}
		// The floor is the first server: primed like the other.
		return a, &endpoint{name: floorAudit, conns: e.sgGRPC, verify: true, engine: sg.engine, prime: true}, nil
	case ShapeForwardAuth, ShapeAuthZEN, ShapeAuthZENBatch:
		if err := e.startNoopHTTP(); err != nil {
			return nil, nil, err
		}
		sg.http = e.httpTarget(e.sg.httpAddr)
		return sg, &endpoint{name: serverNoop, http: e.httpTarget(e.noopHTTP.addr)}, nil
	case ShapeNginx:
		if e.nginx == nil {
			if err := e.startNoopHTTP(); err != nil {
				return nil, nil, err
			}
			up, err := startNoopHTTP(1)
			if err != nil {
				return nil, nil, fmt.Errorf("start the upstream: %w", err)
			}
			e.upstream = up
			if e.nginx, err = startNginx(cfg.Nginx, e.sg.httpAddr, e.noopHTTP.addr, up.addr); err != nil {
				return nil, nil, err
			}
		}
		sg.http = e.httpTarget(e.nginx.sgAddr)
		return sg, &endpoint{name: serverNoop, http: e.httpTarget(e.nginx.noopAddr)}, nil
	}
	return nil, nil, fmt.Errorf("unknown shape %q", shapeName)
}

// countingReader drains the audit shape's stream, as a log collector
// reads scopegate serve's standard output, counting the lines.
type countingReader struct {
	r     *io.PipeReader
	lines atomic.Uint64
	done  chan struct{}
}

func newCountingReader(r *io.PipeReader) *countingReader {
	c := &countingReader{r: r, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		buf := make([]byte, 64<<10)
		for {
			n, err := r.Read(buf)
			c.lines.Add(uint64(bytes.Count(buf[:n], []byte{'\n'})))
			if err != nil {
				return
			}
		}
	}()
	return c
}

func (c *countingReader) close() {
	c.r.Close()
	<-c.done
}
