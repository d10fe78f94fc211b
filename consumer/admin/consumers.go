package admin

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/retry"
)

// consumerOf finds the consumer a path names.
func (h *Handler) consumerOf(r *http.Request) (*entry, error) {
	name := r.PathValue("name")
	if e := h.byName[name]; e != nil {
		return e, nil
	}
	names := make([]string, len(h.consumers))
	for i, e := range h.consumers {
		names[i] = e.name
	}
	return nil, notFound("no consumer %q here; registered: %s", name, strings.Join(names, ", "))
}

// inFlight reads whippet_consumer_in_flight of each group from the Metrics
// gatherer.
func (h *Handler) inFlight() map[string]int64 {
	if h.cfg.gatherer == nil {
		return nil
	}
	fams, _ := h.cfg.gatherer.Gather() // a partial result is still worth showing
	out := map[string]int64{}
	for _, f := range fams {
		if f.GetName() != "whippet_consumer_in_flight" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "group" && m.GetGauge() != nil {
					out[l.GetValue()] = int64(m.GetGauge().GetValue())
				}
			}
		}
	}
	return out
}

// view snapshots a consumer.
func (e *entry) view(inFlight map[string]int64) ConsumerView {
	group, topics := e.c.Group(), e.c.Topics()
	v := ConsumerView{Name: e.name, Group: group, Topics: append([]string{}, topics...), DLQTopics: []string{}, Partitions: []PartitionView{}}
	for _, t := range topics {
		v.DLQTopics = append(v.DLQTopics, retry.DLQTopicName(t, group))
	}
	if n, ok := inFlight[group]; ok {
		v.InFlight = &n
	}
	blocked := map[consumer.TopicPartition][]BlockedView{}
	for _, b := range e.c.Blocked() {
		tp := consumer.TopicPartition{Topic: b.Topic, Partition: b.Partition}
		blocked[tp] = append(blocked[tp], blockedView(e.name, &b))
	}
	e.mu.Lock()
	v.Paused = e.paused
	skipAll := make(map[consumer.TopicPartition]bool, len(e.skipAll))
	for tp := range e.skipAll {
		skipAll[tp] = true
	}
	e.mu.Unlock()
	for _, p := range e.c.Partitions() {
		tp := consumer.TopicPartition{Topic: p.Topic, Partition: p.Partition}
		pv := PartitionView{Topic: p.Topic, Partition: p.Partition, NextOffset: p.NextOffset, Lag: p.Lag,
			Buffered: p.Buffered, Paused: p.Paused, Backpressure: p.Backpressure, SkipAll: skipAll[tp],
			Blocked: blocked[tp]}
		if pv.Blocked == nil {
			pv.Blocked = []BlockedView{}
		} else if slices.ContainsFunc(pv.Blocked, func(b BlockedView) bool { return !b.Waiting }) {
			v.BlockedPartitions++
		}
		v.Lag += max(p.Lag, 0)
		v.Buffered += p.Buffered
		v.Partitions = append(v.Partitions, pv)
	}
	return v
}

func (h *Handler) listConsumers(w http.ResponseWriter, r *http.Request) error {
	if _, err := h.view(r); err != nil {
		return err
	}
	inFlight, payloads := h.inFlight(), h.payloads(r)
	out := make([]ConsumerView, len(h.consumers))
	for i, e := range h.consumers {
		out[i] = e.view(inFlight)
		if !payloads {
			out[i].hidePayloads()
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *Handler) getConsumer(w http.ResponseWriter, r *http.Request) error {
	e, err := h.consumerOf(r)
	if err != nil {
		return err
	}
	if _, err := h.view(r); err != nil {
		return err
	}
	v := e.view(h.inFlight())
	if !h.payloads(r) {
		v.hidePayloads()
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (h *Handler) listPartitions(w http.ResponseWriter, r *http.Request) error {
	e, err := h.consumerOf(r)
	if err != nil {
		return err
	}
	if _, err := h.view(r); err != nil {
		return err
	}
	v := e.view(nil)
	if !h.payloads(r) {
		v.hidePayloads()
	}
	writeJSON(w, http.StatusOK, v.Partitions)
	return nil
}

func (h *Handler) listBlocked(w http.ResponseWriter, r *http.Request) error {
	e, err := h.consumerOf(r)
	if err != nil {
		return err
	}
	if _, err := h.view(r); err != nil {
		return err
	}
	out, payloads := []BlockedView{}, h.payloads(r)
	for _, b := range e.c.Blocked() {
		v := blockedView(e.name, &b)
		if !payloads {
			v.hidePayload()
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// consumerAction pauses or resumes a whole consumer.
func (h *Handler) consumerAction(name string) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		e, err := h.consumerOf(r)
		if err != nil {
			return err
		}
		who, err := h.authorize(r, Action{Name: name, Consumer: e.name, Partition: -1})
		if err != nil {
			return err
		}
		rec := ActionRecord{Who: who, Action: name, Consumer: e.name, Partition: -1, Assigned: true}
		e.mu.Lock()
		if name == ActionPauseConsumer {
			e.c.Pause()
			e.paused = true
			rec.Detail = "paused every partition of the consumer (handlers under way finish)"
		} else {
			e.c.Resume()
			e.paused = false
			rec.Detail = "resumed the consumer (partitions paused one by one stay paused)"
		}
		e.mu.Unlock()
		h.record(r, &rec, e.c.Group(), nil)
		writeJSON(w, http.StatusOK, rec)
		return nil
	}
}

// knows reports whether the consumer consumes topic: one of its topics, or
// one of their retry topics, or a topic it has partitions of now.
func (e *entry) knows(topic string) bool {
	for _, t := range e.c.Topics() {
		if t == topic || strings.HasPrefix(topic, t+"-"+e.c.Group()+"-retry-") {
			return true
		}
	}
	return slices.ContainsFunc(e.c.Partitions(), func(p consumer.PartitionState) bool { return p.Topic == topic })
}

func (e *entry) assigned(topic string, partition int32) bool {
	return slices.ContainsFunc(e.c.Partitions(), func(p consumer.PartitionState) bool {
		return p.Topic == topic && p.Partition == partition
	})
}

// partitionAction is one of skip, skip-all, block, pause and resume.
func (h *Handler) partitionAction(name string) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		e, err := h.consumerOf(r)
		if err != nil {
			return err
		}
		topic := r.PathValue("topic")
		partition, err := parseInt32("partition", r.PathValue("partition"))
		if err != nil {
			return err
		}
		who, err := h.authorize(r, Action{Name: name, Consumer: e.name, Topic: topic, Partition: partition})
		if err != nil {
			return err
		}
		if !e.knows(topic) {
			return notFound("consumer %q does not consume topic %q (its topics: %s)", e.name, topic, strings.Join(e.c.Topics(), ", "))
		}
		tp := consumer.TopicPartition{Topic: topic, Partition: partition}
		rec := ActionRecord{Who: who, Action: name, Consumer: e.name, Topic: topic, Partition: partition,
			Assigned: e.assigned(topic, partition)}
		where := fmt.Sprintf("%s/%d", topic, partition)
		var actErr error
		switch name {
		case ActionSkip:
			var skipped []int64
			for _, b := range e.c.Blocked() {
				if b.Topic == topic && b.Partition == partition && !b.Forwarding {
					skipped = append(skipped, b.Offset)
				}
			}
			actErr = e.c.Skip(topic, partition)
			rec.Detail = fmt.Sprintf("skipped %s at offset(s) %v: sent to the dead-letter topic (reason skipped)", where, skipped)
		case ActionSkipAll:
			e.mu.Lock()
			e.c.SkipAll(topic, partition)
			e.skipAll[tp] = true
			e.mu.Unlock()
			rec.Detail = "skip-all on " + where + ": every failing record goes to the dead-letter topic until block"
		case ActionBlock:
			e.mu.Lock()
			e.c.Block(topic, partition)
			delete(e.skipAll, tp)
			e.mu.Unlock()
			rec.Detail = "block on " + where + ": failing records are retried in place again, as the retry policy says"
		case ActionPause:
			e.c.PausePartition(topic, partition)
			rec.Detail = "paused " + where
		case ActionResume:
			e.c.ResumePartition(topic, partition)
			rec.Detail = "resumed " + where
		}
		if !rec.Assigned && actErr == nil {
			rec.Detail += " (not assigned to this instance now: the consumer applies it when it is)"
		}
		if actErr != nil {
			rec.Detail = ""
			actErr = skipError(e, topic, partition, actErr)
		}
		h.record(r, &rec, e.c.Group(), actErr)
		if actErr != nil {
			return actErr
		}
		writeJSON(w, http.StatusOK, rec)
		return nil
	}
}

// skipError explains why Skip refused.
func skipError(e *entry, topic string, partition int32, err error) error {
	switch {
	case errors.Is(err, consumer.ErrNotAssigned):
		return notFound("%s/%d is not assigned to consumer %q in this process now (another instance of group %q may own it)",
			topic, partition, e.name, e.c.Group())
	case errors.Is(err, consumer.ErrNotBlocked):
		for _, b := range e.c.Blocked() {
			if b.Topic == topic && b.Partition == partition && b.Forwarding {
				return &apiError{status: http.StatusConflict, msg: fmt.Sprintf("%s/%d is held up by a failing forward of offset %d (%s), "+
					"which cannot be skipped: skipping it would lose the record; it is retried until Kafka accepts it",
					topic, partition, b.Offset, b.Error)}
			}
		}
		return &apiError{status: http.StatusConflict, msg: fmt.Sprintf("%s/%d is not blocked: there is nothing to skip", topic, partition)}
	}
	return err
}
