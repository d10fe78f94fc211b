package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/internal/check"
	"github.com/whippet-go/whippet/retry"
)

// Listing limits.
const (
	defaultListLimit = 50
	maxListLimit     = 1000
	maxPositions     = 1000
)

// reasons are the values the reason filter accepts.
var reasons = []retry.Reason{retry.ReasonExhausted, retry.ReasonNonRetriable, retry.ReasonDecode, retry.ReasonSkipped}

// dlqTopics lists the dead-letter topics the handler serves, without
// offsets: those of the registered consumers' topics now (with
// consumer.TopicRegex they change as topics are matched), then those given to
// DLQTopics.
func (h *Handler) dlqTopics() []DLQTopicView {
	var out []DLQTopicView
	seen := map[string]bool{}
	for _, e := range h.consumers {
		group := e.c.Group()
		for _, t := range e.c.Topics() {
			if d := retry.DLQTopicName(t, group); !seen[d] {
				seen[d] = true
				out = append(out, DLQTopicView{Topic: d, Consumer: e.name, Group: group, Source: t})
			}
		}
	}
	for _, t := range h.cfg.dlqTopics {
		if !seen[t] {
			seen[t] = true
			out = append(out, DLQTopicView{Topic: t})
		}
	}
	return out
}

// dlqTopic returns the dead-letter topic a path names, if the handler serves
// it.
func (h *Handler) dlqTopic(r *http.Request) (string, error) {
	if h.cfg.dlq == nil {
		return "", notFound("dead-letter views are off: the service gave the admin handler no dlq.Client (admin.DLQ)")
	}
	topic := r.PathValue("topic")
	served := h.dlqTopics()
	for _, d := range served {
		if d.Topic == topic {
			return topic, nil
		}
	}
	names := make([]string, len(served))
	for i, d := range served {
		names[i] = d.Topic
	}
	return "", notFound("%q is not a dead-letter topic of this service; these are: %s", topic, strings.Join(names, ", "))
}

// sourceOf returns the topic whose dead letters topic holds, if the handler
// knows it (a registered consumer's), else "".
func (h *Handler) sourceOf(topic string) string {
	for _, d := range h.dlqTopics() {
		if d.Topic == topic {
			return d.Source
		}
	}
	return ""
}

// kafkaCtx bounds the Kafka work of a request by the Timeout option.
func (h *Handler) kafkaCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(r.Context(), h.cfg.timeout, fmt.Errorf("%w after %v (admin.Timeout)", errTimeout, h.cfg.timeout))
}

// dlqError turns an error of the dlq package into an answer.
func dlqError(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(context.Cause(ctx), errTimeout) {
		return &apiError{status: http.StatusGatewayTimeout, msg: context.Cause(ctx).Error() + ": " + err.Error()}
	}
	return kafkaError(err)
}

func (h *Handler) listDLQTopics(w http.ResponseWriter, r *http.Request) error {
	if _, err := h.view(r); err != nil {
		return err
	}
	if h.cfg.dlq == nil {
		return notFound("dead-letter views are off: the service gave the admin handler no dlq.Client (admin.DLQ)")
	}
	out := h.dlqTopics()
	if len(out) == 0 { // none yet (TopicRegex): asking kadm for no topic would list them all
		writeJSON(w, http.StatusOK, []DLQTopicView{})
		return nil
	}
	names := make([]string, len(out))
	for i, d := range out {
		names[i] = d.Topic
	}
	ctx, cancel := h.kafkaCtx(r)
	defer cancel()
	adm := kadm.NewClient(h.cfg.dlq.Client())
	starts, serr := adm.ListStartOffsets(ctx, names...)
	ends, eerr := adm.ListEndOffsets(ctx, names...)
	for i := range out {
		d := &out[i]
		if err := errors.Join(serr, eerr); err != nil && (starts[d.Topic] == nil || ends[d.Topic] == nil) {
			d.Error = err.Error()
			continue
		}
		for p, end := range ends[d.Topic] {
			if p < 0 { // kadm's marker of a topic that does not exist
				continue
			}
			d.Exists = true
			start, ok := starts.Lookup(d.Topic, p)
			if end.Err != nil || !ok || start.Err != nil {
				d.Error = fmt.Sprintf("partition %d: %v", p, errors.Join(end.Err, start.Err))
				continue
			}
			d.Records += max(end.Offset-start.Offset, 0)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// parseWhen reads a time parameter as dlq.ParseTime does (the whippet CLI
// too): an RFC 3339 time, or a duration before now ("90m", "2h", "7d").
func parseWhen(param, s string, now time.Time) (time.Time, error) {
	t, err := dlq.ParseTime(s, now)
	if err != nil {
		return time.Time{}, badParam(param, "%v", err)
	}
	return t, nil
}

func parseReason(param, s string) (retry.Reason, error) {
	if s == "" || slices.Contains(reasons, retry.Reason(s)) {
		return retry.Reason(s), nil
	}
	return "", badParam(param, "%q: want one of %v", s, reasons)
}

// filterOf reads the listing's query parameters.
func (h *Handler) filterOf(r *http.Request) (dlq.Filter, error) {
	q := r.URL.Query()
	for k := range q {
		if k == "" {
			// "?=x" or "?&=": nothing to name but the query itself.
			return dlq.Filter{}, badParam("query", "%q has a parameter without a name; want key, error, reason, partition, since, until, limit or cursor", r.URL.RawQuery)
		}
		if !slices.Contains([]string{"key", "error", "reason", "partition", "since", "until", "limit", "cursor"}, k) {
			return dlq.Filter{}, badParam(k, "unknown parameter; want key, error, reason, partition, since, until, limit or cursor")
		}
	}
	f := dlq.Filter{Error: q.Get("error"), Cursor: q.Get("cursor"), Limit: defaultListLimit}
	if q.Has("key") {
		f.Key = []byte(q.Get("key"))
	}
	var err error
	if f.Reason, err = parseReason("reason", q.Get("reason")); err != nil {
		return f, err
	}
	for _, v := range q["partition"] {
		for s := range strings.SplitSeq(v, ",") {
			p, err := parseInt32("partition", strings.TrimSpace(s))
			if err != nil {
				return f, err
			}
			f.Partitions = append(f.Partitions, p)
		}
	}
	now := h.now()
	if s := q.Get("since"); s != "" {
		if f.Since, err = parseWhen("since", s, now); err != nil {
			return f, err
		}
	}
	if s := q.Get("until"); s != "" {
		if f.Until, err = parseWhen("until", s, now); err != nil {
			return f, err
		}
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxListLimit {
			return f, badParam("limit", "must be an integer from 1 to %d, got %q", maxListLimit, s)
		}
		f.Limit = n
	}
	return f, nil
}

func (h *Handler) listDLQ(w http.ResponseWriter, r *http.Request) error {
	topic, err := h.dlqTopic(r)
	if err != nil {
		return err
	}
	if _, err := h.view(r); err != nil {
		return err
	}
	f, err := h.filterOf(r)
	if err != nil {
		return err
	}
	payloads := h.payloads(r)
	if err := checkPayloadFilter(payloads, "", f.Key != nil, f.Error != ""); err != nil {
		return err
	}
	ctx, cancel := h.kafkaCtx(r)
	defer cancel()
	page, err := h.cfg.dlq.List(ctx, topic, f)
	if err != nil {
		return dlqError(ctx, err)
	}
	out := DLQPage{Topic: topic, Records: make([]DLQRecord, 0, len(page.Records)), Next: page.Next}
	for i := range page.Records {
		out.Records = append(out.Records, page.Records[i].View(dlq.ViewOptions{MaxValue: maxListedValue, HidePayload: !payloads}))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *Handler) getDLQ(w http.ResponseWriter, r *http.Request) error {
	topic, err := h.dlqTopic(r)
	if err != nil {
		return err
	}
	partition, err := parseInt32("partition", r.PathValue("partition"))
	if err != nil {
		return err
	}
	offset, err := strconv.ParseInt(r.PathValue("offset"), 10, 64)
	if err != nil || offset < 0 {
		return badParam("offset", "must be an offset (an integer >= 0), got %q", r.PathValue("offset"))
	}
	if _, err := h.view(r); err != nil {
		return err
	}
	ctx, cancel := h.kafkaCtx(r)
	defer cancel()
	rec, err := h.cfg.dlq.Get(ctx, topic, partition, offset)
	if err != nil {
		return dlqError(ctx, err)
	}
	writeJSON(w, http.StatusOK, rec.View(dlq.ViewOptions{HidePayload: !h.payloads(r)}))
	return nil
}

// checkPayloadFilter refuses a filter by key or error text to who may not
// read payloads (see ActionViewPayloads).
func checkPayloadFilter(payloads bool, prefix string, byKey, byError bool) error {
	switch {
	case payloads:
		return nil
	case byKey:
		return payloadFilter(prefix + "key")
	case byError:
		return payloadFilter(prefix + "error")
	}
	return nil
}

// replayFilter turns a request's filter into a dlq.Filter.
func (h *Handler) replayFilter(rf *ReplayFilter) (dlq.Filter, error) {
	f := dlq.Filter{Error: rf.Error, Partitions: rf.Partitions}
	if rf.Key != nil {
		f.Key = []byte(*rf.Key)
	}
	var err error
	if f.Reason, err = parseReason("filter.reason", rf.Reason); err != nil {
		return f, err
	}
	now := h.now()
	if rf.Since != "" {
		if f.Since, err = parseWhen("filter.since", rf.Since, now); err != nil {
			return f, err
		}
	}
	if rf.Until != "" {
		if f.Until, err = parseWhen("filter.until", rf.Until, now); err != nil {
			return f, err
		}
	}
	if f.Key == nil && f.Error == "" && f.Reason == "" && len(f.Partitions) == 0 && f.Since.IsZero() && f.Until.IsZero() {
		return f, badParam("filter", "selects every record; to replay them all, say so with \"all\": true")
	}
	return f, nil
}

func (h *Handler) replay(w http.ResponseWriter, r *http.Request) error {
	topic, err := h.dlqTopic(r)
	if err != nil {
		return err
	}
	var req ReplayRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	n := 0
	for _, set := range []bool{len(req.Positions) > 0, req.All, req.Filter != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return badParam("body", "give exactly one of \"positions\", \"all\": true and \"filter\", got %d", n)
	}
	if len(req.Positions) > maxPositions {
		return badParam("positions", "at most %d per request, got %d", maxPositions, len(req.Positions))
	}
	var filter dlq.Filter
	if req.Filter != nil {
		if filter, err = h.replayFilter(req.Filter); err != nil {
			return err
		}
	}
	for i, p := range req.Positions {
		if p.Partition < 0 || p.Offset < 0 {
			return badParam(fmt.Sprintf("positions[%d]", i), "partition and offset must be >= 0, got %d/%d", p.Partition, p.Offset)
		}
	}
	if req.To != "" {
		if rule := check.TopicRule(req.To); rule != "" {
			return badParam("to", "%s", rule)
		}
		if req.To == topic {
			return badParam("to", "%q is the dead-letter topic itself", req.To)
		}
	}
	if req.Filter != nil {
		if err := checkPayloadFilter(h.payloads(r), "filter.", req.Filter.Key != nil, req.Filter.Error != ""); err != nil {
			return err
		}
	}
	name := ActionReplay
	if req.DryRun {
		name = ActionReplayDryRun
	}
	who, err := h.authorize(r, Action{Name: name, Topic: topic, Partition: -1, ReplayTo: req.To})
	if err != nil {
		return err
	}
	ctx, cancel := h.kafkaCtx(r)
	defer cancel()
	var opts []dlq.ActionOption
	if req.DryRun {
		opts = append(opts, dlq.DryRun())
	}
	if req.To != "" {
		opts = append(opts, dlq.ReplayTo(req.To))
	} else if src := h.sourceOf(topic); src != "" {
		opts = append(opts, dlq.ReplaySource(src))
	}
	out := ReplayResponse{Topic: topic, DryRun: req.DryRun, Replayed: []ReplayedRecord{}, Skipped: []SkippedRecord{}}
	add := func(res dlq.ReplayResult) {
		for _, rr := range res.Replayed {
			to := rr.To.String()
			if req.DryRun {
				to = rr.To.Topic
			}
			out.Replayed = append(out.Replayed, ReplayedRecord{From: rr.From.String(), To: to})
		}
		for _, s := range res.Skipped {
			out.Skipped = append(out.Skipped, SkippedRecord{From: s.From.String(), Reason: s.Reason, OtherTopic: s.OtherTopic})
		}
	}
	var what string
	switch {
	case req.All:
		what = "every record"
		res, rerr := h.cfg.dlq.Replay(ctx, topic, dlq.Filter{}, opts...)
		add(res)
		err = rerr
	case req.Filter != nil:
		what = "the records the filter selects"
		res, rerr := h.cfg.dlq.Replay(ctx, topic, filter, opts...)
		add(res)
		err = rerr
	default:
		what = fmt.Sprintf("%d selected record(s)", len(req.Positions))
		err = h.replayPositions(ctx, topic, req.Positions, opts, add)
	}
	rec := ActionRecord{Who: who, Action: name, Topic: topic, Partition: -1, Assigned: true}
	verb, to := "replayed", "the original topic"
	if req.DryRun {
		verb = "dry run: would replay"
	}
	if req.To != "" {
		to = fmt.Sprintf("%s (named by the operator)", req.To)
	}
	rec.Detail = fmt.Sprintf("%s %d of %s to %s; %d skipped", verb, len(out.Replayed), what, to, len(out.Skipped))
	if err != nil {
		err = dlqError(ctx, err)
	}
	h.record(r, &rec, "", err)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// replayPositions replays the records at the given positions: it checks that
// each exists first (so a typo replays nothing), then replays each alone.
func (h *Handler) replayPositions(ctx context.Context, topic string, ps []PartitionOffset, opts []dlq.ActionOption, add func(dlq.ReplayResult)) error {
	var recs []dlq.Record
	seen := map[PartitionOffset]bool{}
	for _, p := range ps {
		if seen[p] { // a position given twice is replayed once
			continue
		}
		seen[p] = true
		rec, err := h.cfg.dlq.Get(ctx, topic, p.Partition, p.Offset)
		if err != nil {
			return err
		}
		recs = append(recs, rec)
	}
	for _, rec := range recs {
		// A filter that starts at the record's offset in its partition and
		// takes one record selects exactly it, since Get found it there.
		// (The cursor is dlq's "<partition>:<offset>" form of Page.Next.)
		f := dlq.Filter{Partitions: []int32{rec.Partition}, Key: rec.Key, Limit: 1,
			Cursor: fmt.Sprintf("%d:%d", rec.Partition, rec.Offset)}
		res, err := h.cfg.dlq.Replay(ctx, topic, f, opts...)
		add(res)
		if err != nil {
			return err
		}
		got := slices.ContainsFunc(res.Replayed, func(r dlq.Replayed) bool { return r.From == rec.Position }) ||
			slices.ContainsFunc(res.Skipped, func(s dlq.Skipped) bool { return s.From == rec.Position })
		if !got {
			return fmt.Errorf("admin: replaying %s selected another record: %+v", rec.Position, res)
		}
	}
	return nil
}

func (h *Handler) purge(w http.ResponseWriter, r *http.Request) error {
	topic, err := h.dlqTopic(r)
	if err != nil {
		return err
	}
	var req PurgeRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	var scope dlq.PurgeScope
	switch {
	case req.All == (req.Before != ""):
		return badParam("body", "give exactly one of \"all\": true and \"before\"; records cannot be purged by key, error or reason, Kafka deletes whole prefixes of partitions")
	case req.All:
		scope = dlq.PurgeAll()
	default:
		t, err := parseWhen("before", req.Before, h.now())
		if err != nil {
			return err
		}
		scope = dlq.PurgeBefore(t)
	}
	name := ActionPurge
	if req.DryRun {
		name = ActionPurgeDryRun
	}
	who, err := h.authorize(r, Action{Name: name, Topic: topic, Partition: -1})
	if err != nil {
		return err
	}
	ctx, cancel := h.kafkaCtx(r)
	defer cancel()
	var opts []dlq.ActionOption
	if req.DryRun {
		opts = append(opts, dlq.DryRun())
	}
	res, err := h.cfg.dlq.Purge(ctx, topic, scope, opts...)
	out := PurgeResponse{Topic: topic, Scope: scope.String(), DryRun: res.DryRun, Deleted: res.Deleted, Partitions: []PartitionPurge{}}
	for _, p := range res.Partitions {
		out.Partitions = append(out.Partitions, PartitionPurge(p))
	}
	rec := ActionRecord{Who: who, Action: name, Topic: topic, Partition: -1, Assigned: true}
	if req.DryRun {
		rec.Detail = fmt.Sprintf("dry run: would purge %d record(s) (%s)", res.Deleted, scope)
	} else {
		rec.Detail = fmt.Sprintf("purged %d record(s) (%s)", res.Deleted, scope)
	}
	if err != nil {
		err = dlqError(ctx, err)
	}
	h.record(r, &rec, "", err)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
