package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/scopegate/scopegate/server"
	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/audit"
	"github.com/scopegate/scopegate/store/usage"
)

// auditFlags are the serve flags of the decision audit log and the scope
// usage aggregation.
type auditFlags struct {
	audit         string
	allowSample   float64
	block         bool
	buffer        int
	fileMaxBytes  int64
	fileBackups   int
	usage         bool
	usageInterval time.Duration
	otlpAuditFlags

	// files are the file:PATH sinks apply opened, which SIGHUP reopens
	// (serve.go).
	files []*audit.FileSink
}

func (a *auditFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&a.audit, "audit", "stdout", "where decision audit records go: stdout, file:PATH, postgres (the --store database), otlp (an OpenTelemetry collector, --audit-otlp-endpoint), several separated by commas, or off")
	fs.Float64Var(&a.allowSample, "audit-allow-sample", 1, "fraction of allows audited, 0 to 1 (denies are always audited)")
	fs.BoolVar(&a.block, "audit-block", false, "when the audit buffer is full, make decisions wait for room (up to their deadline) instead of dropping records")
	fs.IntVar(&a.buffer, "audit-buffer", audit.DefaultBufferSize, "decisions the audit buffer holds before it drops (or blocks)")
	fs.Int64Var(&a.fileMaxBytes, "audit-file-max-bytes", audit.DefaultMaxBytes, "rotate a file:PATH audit log at this size, keeping --audit-file-backups old files; 0 never rotates (the file then grows until logrotate moves it: SIGHUP reopens it)")
	fs.IntVar(&a.fileBackups, "audit-file-backups", audit.DefaultMaxBackups, "rotated audit files kept (PATH.1 is the newest)")
	fs.BoolVar(&a.usage, "usage", true, "aggregate granted versus used scopes per client, for scopegate report usage (persisted in the store, if any)")
	fs.DurationVar(&a.usageInterval, "usage-flush-interval", usage.DefaultFlushInterval, "how often usage counts are persisted to the store")
	a.otlpAuditFlags.define(fs)
}

// apply fills cfg.Audit from the flags. stdout receives stdout records; st
// is the opened store, or nil: --audit postgres needs a PostgreSQL store,
// and with a store usage is persisted in it; env reads the standard
// OTEL_* variables of --audit otlp. The sinks it opens belong to the
// server once it is given cfg; when apply fails it closes those it
// opened.
func (a *auditFlags) apply(cfg *server.Config, stdout io.Writer, st store.Store, env func(string) (string, bool)) (err error) {
	if math.IsNaN(a.allowSample) || a.allowSample < 0 || a.allowSample > 1 {
		return fmt.Errorf("--audit-allow-sample %v: give a fraction from 0 to 1 (1 audits every allow, 0 none)", a.allowSample)
	}
	if a.buffer <= 0 || a.buffer > audit.MaxBufferSize {
		return fmt.Errorf("--audit-buffer %d: give 1 to %d decisions (default %d)", a.buffer, audit.MaxBufferSize, audit.DefaultBufferSize)
	}
	if a.fileMaxBytes < 0 {
		return fmt.Errorf("--audit-file-max-bytes %d: give a size in bytes (default %d), or 0 to never rotate", a.fileMaxBytes, audit.DefaultMaxBytes)
	}
	if a.fileBackups < 1 || a.fileBackups > 1000 {
		return fmt.Errorf("--audit-file-backups %d: give 1 to 1000 files (default %d)", a.fileBackups, audit.DefaultMaxBackups)
	}
	if a.usageInterval < 100*time.Millisecond {
		return fmt.Errorf("--usage-flush-interval %v: give at least 100ms (default %v)", a.usageInterval, usage.DefaultFlushInterval)
	}
	dests, err := audit.ParseDestinations(a.audit)
	if err != nil {
		return fmt.Errorf("--audit: %w", err)
	}
	ac := server.AuditConfig{
		AllowSample: a.allowSample,
		DenyOnly:    a.allowSample == 0,
		Block:       a.block,
		BufferSize:  a.buffer,
		Usage:       a.usage,
	}
	if err := a.applyMask(&ac); err != nil {
		return err
	}
	if !slices.ContainsFunc(dests, func(d audit.Destination) bool { return d.Kind == audit.KindOTLP }) {
		for _, f := range []struct{ name, value string }{{"audit-otlp-endpoint", a.endpoint}, {"audit-otlp-ca-file", a.caFile}, {"audit-otlp-headers-file", a.headersFile}} {
			if f.value != "" {
				return fmt.Errorf("--%s is set but --audit %q has no otlp: add otlp to --audit (e.g. --audit stdout,otlp), or drop the setting", f.name, a.audit)
			}
		}
	}
	var files []*audit.FileSink
	defer func() {
		if err != nil {
			closeSinks(ac.Sinks)
		}
	}()
	for _, d := range dests {
		switch d.Kind {
		case audit.KindStdout:
			ac.Sinks = append(ac.Sinks, audit.NewWriterSink("stdout", stdout))
		case audit.KindFile:
			maxBytes := a.fileMaxBytes
			if maxBytes == 0 {
				maxBytes = -1 // never rotate
			}
			fs, err := audit.NewFileSink(d.Path, audit.FileOptions{MaxBytes: maxBytes, MaxBackups: a.fileBackups})
			if err != nil {
				return fmt.Errorf("--audit file:%s: %w", d.Path, err)
			}
			files = append(files, fs)
			ac.Sinks = append(ac.Sinks, fs)
		case audit.KindPostgres:
			p, ok := st.(store.AuditSinkProvider)
			if !ok {
				return errors.New("--audit postgres writes to the store's database: give --store with a postgres:// URL")
			}
			sink, err := p.NewAuditSink()
			if err != nil {
				return fmt.Errorf("--audit postgres: %w", err)
			}
			ac.Sinks = append(ac.Sinks, sink)
		case audit.KindOTLP:
			sink, err := a.otlpAuditFlags.sink(env, cfg.Logger)
			if err != nil {
				return err
			}
			ac.Sinks = append(ac.Sinks, sink)
		}
	}
	if a.usage && st != nil {
		if us, ok := st.(store.UsageStoreProvider); ok {
			ac.UsageStore = us.UsageStore()
			ac.UsageFlushInterval = a.usageInterval
		}
	}
	cfg.Audit = ac
	a.files = files
	return nil
}

// closeSinks closes audit sinks that no server took: nothing was written
// to them yet, so there is nothing to flush.
func closeSinks(sinks []audit.Sink) {
	for _, sink := range sinks {
		_ = sink.Close(context.Background())
	}
}
