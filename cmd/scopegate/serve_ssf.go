package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/scopegate/scopegate/decision/ssf"
	"github.com/scopegate/scopegate/server"
	"github.com/scopegate/scopegate/store"
)

// ssfFlags configure the Shared Signals receiver.
type ssfFlags struct {
	ssfConfig, ssfAddr                 string
	ssfTLSCert, ssfTLSKey, ssfClientCA string
}

func (f *ssfFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&f.ssfConfig, "ssf-config", "", "YAML file of the Shared Signals (SSF/CAEP/RISC) transmitters whose events become revocations (docs/revocation.md); needs --store")
	fs.StringVar(&f.ssfAddr, "ssf-addr", "", "host:port of the SSF push listener (POST /ssf/events, GET /ssf/status); empty: poll only")
	fs.StringVar(&f.ssfTLSCert, "ssf-tls-cert", "", "PEM certificate: serve the SSF push listener over TLS (with --ssf-tls-key)")
	fs.StringVar(&f.ssfTLSKey, "ssf-tls-key", "", "PEM private key of --ssf-tls-cert")
	fs.StringVar(&f.ssfClientCA, "ssf-client-ca", "", "PEM CA bundle: verify the client certificates transmitters push with (push.client_cert in --ssf-config; needs --ssf-tls-cert)")
}

// ssfFile is the --ssf-config file.
type ssfFile struct {
	Transmitters []struct {
		Name             string            `yaml:"name"`
		Issuer           string            `yaml:"issuer"`
		ConfigurationURL string            `yaml:"configuration_url"`
		JWKSURI          string            `yaml:"jwks_uri"`
		Audience         []string          `yaml:"audience"`
		TokenIssuer      string            `yaml:"token_issuer"`
		EmailIsSub       bool              `yaml:"email_is_sub"`
		OpaqueIsSub      bool              `yaml:"opaque_is_sub"`
		ACRValues        map[string]string `yaml:"acr_values"`
		MaxAge           time.Duration     `yaml:"max_age"`
		RevocationTTL    time.Duration     `yaml:"revocation_ttl"`
		StreamID         string            `yaml:"stream_id"`
		VerificationURL  string            `yaml:"verification_endpoint"`
		Token            secretRef         `yaml:"token"`
		Push             *struct {
			Token      secretRef `yaml:"token"`
			ClientCert *struct {
				Subject string `yaml:"subject"`
				SAN     string `yaml:"san"`
			} `yaml:"client_cert"`
		} `yaml:"push"`
		Stream *ssfStreamBlock `yaml:"stream"`
		Poll   *struct {
			URL       string        `yaml:"url"`
			Token     secretRef     `yaml:"token"`
			Interval  time.Duration `yaml:"interval"`
			MaxEvents int           `yaml:"max_events"`
			LeaseTTL  time.Duration `yaml:"lease_ttl"`
		} `yaml:"poll"`
	} `yaml:"transmitters"`
}

// ssfStreamBlock is a transmitter's stream: scopegate creates or updates
// it through the transmitter's Stream Management API (docs/revocation.md).
type ssfStreamBlock struct {
	Manage          bool             `yaml:"manage"`
	Delivery        string           `yaml:"delivery"`
	EndpointURL     string           `yaml:"endpoint_url"`
	EventsRequested []string         `yaml:"events_requested"`
	Description     string           `yaml:"description"`
	Subjects        []map[string]any `yaml:"subjects"`
	StatusInterval  time.Duration    `yaml:"status_interval"`
}

// apply fills st.Stream from b.
func (b *ssfStreamBlock) apply(st *server.SSFTransmitter, where string) error {
	if !b.Manage {
		return fmt.Errorf("%s.stream: set manage: true to let scopegate create and update the stream, or drop the block (stream_id and verification_endpoint name a stream made by hand)", where)
	}
	if st.ConfigurationURL == "" {
		return fmt.Errorf("%s.stream: manage needs configuration_url: the transmitter's configuration document names its stream management endpoints", where)
	}
	if b.StatusInterval < 0 {
		return fmt.Errorf("%s.stream: status_interval %v is negative: give a duration such as 1m, or none for the default", where, b.StatusInterval)
	}
	st.Stream = server.SSFStream{Manage: true, Delivery: b.Delivery, EndpointURL: b.EndpointURL,
		EventsRequested: b.EventsRequested, Description: b.Description, StatusInterval: b.StatusInterval}
	for i, sub := range b.Subjects {
		if f, _ := sub["format"].(string); f == "" {
			return fmt.Errorf("%s.stream.subjects[%d]: a subject needs a format (iss_sub, email, opaque, ...; RFC 9493)", where, i)
		}
		raw, err := json.Marshal(sub)
		if err != nil {
			return fmt.Errorf("%s.stream.subjects[%d]: %v", where, i, err)
		}
		st.Stream.Subjects = append(st.Stream.Subjects, raw)
	}
	return nil
}

// secretRef names a secret by file or environment variable, never inline.
type secretRef struct {
	File string `yaml:"file"`
	Env  string `yaml:"env"`
}

func (s secretRef) read(dir, field string) (string, error) {
	switch {
	case s.File != "" && s.Env != "":
		return "", fmt.Errorf("%s: give file or env, not both", field)
	case s.File != "":
		p := s.File
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("%s: %w", field, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("%s: %s is empty", field, s.File)
		}
		return v, nil
	case s.Env != "":
		v := strings.TrimSpace(os.Getenv(s.Env))
		if v == "" {
			return "", fmt.Errorf("%s: environment variable %s is empty or unset", field, s.Env)
		}
		return v, nil
	}
	return "", nil
}

// apply reads the --ssf-config file into cfg.SSF.
func (f *ssfFlags) apply(cfg *server.Config) error {
	if f.ssfConfig == "" {
		if f.ssfAddr != "" || f.ssfTLSCert != "" || f.ssfTLSKey != "" || f.ssfClientCA != "" {
			return errors.New("--ssf-addr, --ssf-tls-cert, --ssf-tls-key and --ssf-client-ca need --ssf-config: name the transmitters to receive from")
		}
		return nil
	}
	b, err := os.ReadFile(f.ssfConfig)
	if err != nil {
		return fileError("--ssf-config", f.ssfConfig, err)
	}
	var doc ssfFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("--ssf-config %s: %s", f.ssfConfig, yamlDecodeError(err, &doc))
	}
	if len(doc.Transmitters) == 0 {
		return fmt.Errorf("--ssf-config %s: no transmitters", f.ssfConfig)
	}
	dir := filepath.Dir(f.ssfConfig)
	cfg.SSF.Addr = f.ssfAddr
	cfg.SSF.TLSCertFile, cfg.SSF.TLSKeyFile, cfg.SSF.ClientCAFile = f.ssfTLSCert, f.ssfTLSKey, f.ssfClientCA
	for i, t := range doc.Transmitters {
		where := fmt.Sprintf("--ssf-config %s: transmitters[%d]", f.ssfConfig, i)
		st := server.SSFTransmitter{Name: t.Name, ConfigurationURL: t.ConfigurationURL, JWKSURI: t.JWKSURI,
			StreamID: t.StreamID, VerificationURL: t.VerificationURL,
			Transmitter: ssf.Transmitter{Issuer: t.Issuer, Audience: t.Audience, TokenIssuer: t.TokenIssuer,
				EmailIsSub: t.EmailIsSub, OpaqueIsSub: t.OpaqueIsSub, ACRValues: t.ACRValues, MaxAge: t.MaxAge, RevocationTTL: t.RevocationTTL}}
		if st.Token, err = t.Token.read(dir, where+".token"); err != nil {
			return err
		}
		if t.Push != nil {
			if st.PushToken, err = t.Push.Token.read(dir, where+".push.token"); err != nil {
				return err
			}
			if cc := t.Push.ClientCert; cc != nil {
				if cc.Subject == "" && cc.SAN == "" {
					return fmt.Errorf("%s.push.client_cert: give subject or san (or both): what the transmitter's certificate must name", where)
				}
				if f.ssfClientCA == "" {
					return fmt.Errorf("%s.push.client_cert needs --ssf-client-ca (and --ssf-tls-cert, --ssf-tls-key): the CA that issues the transmitter's certificate", where)
				}
				st.PushClientCert = server.SSFClientCert{Subject: cc.Subject, SAN: cc.SAN}
			}
			if st.PushToken == "" && st.PushClientCert.IsZero() {
				return fmt.Errorf("%s.push: token (file or env) or client_cert is required: pushes are authenticated", where)
			}
			if f.ssfAddr == "" {
				return fmt.Errorf("%s.push: push delivery needs --ssf-addr", where)
			}
		}
		managed := t.Stream != nil
		if managed {
			if err := t.Stream.apply(&st, where); err != nil {
				return err
			}
		}
		if t.Poll != nil {
			if t.Poll.URL == "" && !managed {
				return fmt.Errorf("%s.poll: url is required (or let a managed stream give it: stream.manage)", where)
			}
			st.PollURL, st.PollInterval, st.MaxEvents, st.LeaseTTL = t.Poll.URL, t.Poll.Interval, t.Poll.MaxEvents, t.Poll.LeaseTTL
			if t.Poll.LeaseTTL < 0 {
				return fmt.Errorf("%s.poll: lease_ttl %v is negative: give a duration such as 15s, or none for the default", where, t.Poll.LeaseTTL)
			}
			if st.PollToken, err = t.Poll.Token.read(dir, where+".poll.token"); err != nil {
				return err
			}
			if st.PollToken == "" {
				st.PollToken = st.Token
			}
		}
		if t.Push == nil && t.Poll == nil && !managed {
			return fmt.Errorf("%s: give push or poll delivery, or a managed stream", where)
		}
		if managed && t.Poll == nil {
			st.PollToken = st.Token
		}
		cfg.SSF.Transmitters = append(cfg.SSF.Transmitters, st)
	}
	return nil
}

// useStore gives the receiver the store's poll leases, so that of the
// replicas sharing the store one polls each transmitter.
func (f *ssfFlags) useStore(cfg *server.Config, st store.Store) error {
	if len(cfg.SSF.Transmitters) == 0 {
		return nil
	}
	lp, ok := st.(store.LeaserProvider)
	if !ok {
		for _, t := range cfg.SSF.Transmitters {
			if t.PollURL != "" || t.Stream.Manage {
				return fmt.Errorf("--ssf-config: transmitter %q polls or has a managed stream, but the --store backend has no lease to keep replicas from polling or creating streams at once: use PostgreSQL or the embedded file", t.Name)
			}
		}
		return nil
	}
	cfg.SSF.Leaser = lp.Leaser()
	if sp, ok := st.(store.SSFStreamStoreProvider); ok {
		cfg.SSF.Streams = sp.SSFStreams()
	} else {
		for _, t := range cfg.SSF.Transmitters {
			if t.Stream.Manage {
				return fmt.Errorf("--ssf-config: transmitter %q has a managed stream, but the --store backend keeps no stream records (so a restart would create another stream): use PostgreSQL or the embedded file", t.Name)
			}
		}
	}
	return nil
}
