package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/pve-migration/router/internal/compare"
	"github.com/pve-migration/router/internal/config"
	pb "github.com/pve-migration/router/proto/pvemigration/v1"
)

// CompareView is the comparison report as every face shows it: the
// report's totals with the phase, sample rate and switch in force, and the
// window ending now.
func CompareView(r *compare.Report, snap *config.Snapshot, now time.Time) compare.Summary {
	var s compare.Summary
	if r != nil {
		s = r.Summary()
	} else {
		s = compare.NewReport(now).Summary()
	}
	s.Until = now
	if snap != nil {
		s.Phase = snap.Policy.Phase.String()
		s.Enabled = snap.Compare.Enabled
		s.SamplePercent = snap.Compare.SamplePercent
	}
	return s
}

// registerCompare serves GET /compare (HTML) and GET /compare.json.
func registerCompare(mux *http.ServeMux, opts AdminOptions) {
	view := func() compare.Summary {
		var snap *config.Snapshot
		if opts.Config != nil {
			snap = opts.Config.Current()
		}
		return CompareView(opts.Compare, snap, time.Now())
	}
	mux.HandleFunc("GET /compare.json", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, view())
	})
	mux.HandleFunc("GET /compare", func(w http.ResponseWriter, _ *http.Request) {
		var buf bytes.Buffer
		if err := compare.WriteHTML(&buf, view()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		_, _ = w.Write(buf.Bytes())
	})
}

// CompareService is pvemigration.v1.CompareService: the report for
// `migration-ctl compare`, the same document as /compare.json.
type CompareService struct {
	pb.UnimplementedCompareServiceServer
	report *compare.Report
	config func() *config.Snapshot
}

// NewCompareService serves report under the config in force.
func NewCompareService(report *compare.Report, cfg func() *config.Snapshot) *CompareService {
	return &CompareService{report: report, config: cfg}
}

// GetCompare returns the report as JSON.
func (c *CompareService) GetCompare(context.Context, *pb.GetCompareRequest) (*pb.GetCompareResponse, error) {
	var snap *config.Snapshot
	if c.config != nil {
		snap = c.config()
	}
	b, err := json.Marshal(CompareView(c.report, snap, time.Now()))
	if err != nil {
		return nil, fmt.Errorf("compare report: %w", err)
	}
	return &pb.GetCompareResponse{ReportJson: b}, nil
}
