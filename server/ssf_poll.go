package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/scopegate/scopegate/decision/ssf"
)

// Poll delivery (RFC 8936). Each request acknowledges what the previous
// one applied (and reports what it refused in setErrs), then asks for up
// to MaxEvents more. A SET is acknowledged only once its revocations are
// in the store; one the store could not take is left unacknowledged, and
// the transmitter delivers it again. The position therefore lives with
// the transmitter, and a restart re-applies nothing twice: the
// revocations' ids are derived from the SET (decision/ssf), so a
// redelivered SET finds them stored and is acknowledged.

type pollRequest struct {
	Ack               []string              `json:"ack"`
	SetErrs           map[string]pollSetErr `json:"setErrs,omitempty"`
	MaxEvents         int                   `json:"maxEvents"`
	ReturnImmediately bool                  `json:"returnImmediately"`
}

type pollSetErr struct {
	Err         string `json:"err"`
	Description string `json:"description"`
}

type pollResponse struct {
	Sets          map[string]string `json:"sets"`
	MoreAvailable bool              `json:"moreAvailable"`
}

// poll polls tx until ctx ends (the receiver closes, or the lease is lost).
func (r *SSFReceiver) poll(ctx context.Context, tx *ssfTx) {
	acks := []string{}
	errs := map[string]pollSetErr{}
	for {
		more, nextAcks, nextErrs, err := r.pollOnce(ctx, tx, acks, errs)
		if ctx.Err() != nil {
			return // not the transmitter's failure
		}
		if err != nil {
			r.setStatus(tx, ssfErrPoll, err)
		} else {
			acks, errs = nextAcks, nextErrs
			if tx.failing(ssfErrPoll) {
				r.setStatus(tx, ssfErrPoll, nil)
			}
		}
		wait := tx.cfg.PollInterval
		if err != nil {
			wait = max(wait, ssfRetry)
		} else if more || len(acks) > 0 || len(errs) > 0 {
			wait = 0 // fetch the rest, or deliver the acknowledgements now
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// pollOnce sends acks and errs and applies what comes back; it returns the
// acks and errs for the next request.
func (r *SSFReceiver) pollOnce(ctx context.Context, tx *ssfTx, acks []string, errs map[string]pollSetErr) (bool, []string, map[string]pollSetErr, error) {
	body, _ := json.Marshal(pollRequest{Ack: acks, SetErrs: errs, MaxEvents: tx.cfg.MaxEvents, ReturnImmediately: true})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tx.pollURL(), bytes.NewReader(body))
	if err != nil {
		return false, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if tx.cfg.PollToken != "" {
		req.Header.Set("Authorization", "Bearer "+tx.cfg.PollToken)
	}
	resp, err := tx.cfg.HTTPClient.Do(req)
	if err != nil {
		return false, nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, nil, nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	var pr pollResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, int64(tx.cfg.MaxEvents)*ssf.MaxSETBytes+4096)).Decode(&pr); err != nil {
		return false, nil, nil, fmt.Errorf("response: %w", err)
	}
	nextAcks := []string{}
	nextErrs := map[string]pollSetErr{}
	for jti, raw := range pr.Sets {
		err := r.receive(ctx, tx, ssfViaPoll, []byte(raw))
		var se *ssf.Error
		switch {
		case err == nil:
			nextAcks = append(nextAcks, jti)
		case errors.As(err, &se):
			nextErrs[jti] = pollSetErr{Err: se.Code, Description: se.Description}
		default:
			r.log.Error("SET not applied; left unacknowledged for redelivery", "transmitter", tx.cfg.Name, "error", err)
		}
	}
	return pr.MoreAvailable, nextAcks, nextErrs, nil
}
