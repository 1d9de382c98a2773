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
	"github.com/pve-migration/router/internal/pveschema"
	pb "github.com/pve-migration/router/proto/pvemigration/v1"
)

// CompareView is the comparison report as every face shows it: the
// report's totals with the phase, sample rate and switch in force, and the
// window ending now.
// schema, when not nil, adds the schema conformance of the same answers.
func CompareView(r *compare.Report, schema SchemaSource, snap *config.Snapshot, now time.Time) compare.Summary {
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
	if schema != nil && schema.Enabled() {
		rep := schema.Report()
		s.Schema = rep
	}
	return s
}

// SchemaSource is the schema conformance the compare workers feed
// (pveschema.Conformance).
type SchemaSource interface {
	Enabled() bool
	Report() *pveschema.Report
	Status() pveschema.Status
}

// registerCompare serves GET /compare (HTML) and GET /compare.json.
func registerCompare(mux *http.ServeMux, opts AdminOptions) {
	view := func() compare.Summary {
		var snap *config.Snapshot
		if opts.Config != nil {
			snap = opts.Config.Current()
		}
		return CompareView(opts.Compare, opts.Schema, snap, time.Now())
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
	schema SchemaSource
	config func() *config.Snapshot
}

// NewCompareService serves report (and schema, when not nil) under the
// config in force.
func NewCompareService(report *compare.Report, schema SchemaSource, cfg func() *config.Snapshot) *CompareService {
	return &CompareService{report: report, schema: schema, config: cfg}
}

// GetCompare returns the report as JSON.
func (c *CompareService) GetCompare(context.Context, *pb.GetCompareRequest) (*pb.GetCompareResponse, error) {
	var snap *config.Snapshot
	if c.config != nil {
		snap = c.config()
	}
	b, err := json.Marshal(CompareView(c.report, c.schema, snap, time.Now()))
	if err != nil {
		return nil, fmt.Errorf("compare report: %w", err)
	}
	return &pb.GetCompareResponse{ReportJson: b}, nil
}
