package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/whippet-go/whippet/consumer"
)

// seekTarget reads a SeekRequest.
func (h *Handler) seekTarget(req *SeekRequest) (consumer.SeekTarget, error) {
	n := 0
	for _, set := range []bool{req.Offset != nil, req.Time != "", req.End} {
		if set {
			n++
		}
	}
	if n != 1 {
		return consumer.SeekTarget{}, badParam("body", `give exactly one of "offset", "time" and "end", got %d`, n)
	}
	switch {
	case req.Offset != nil:
		if *req.Offset < 0 {
			return consumer.SeekTarget{}, badParam("offset", "must be >= 0, got %d", *req.Offset)
		}
		return consumer.SeekOffset(*req.Offset), nil
	case req.Time != "":
		t, err := parseWhen("time", req.Time, h.now())
		if err != nil {
			return consumer.SeekTarget{}, err
		}
		return consumer.SeekTime(t), nil
	}
	return consumer.SeekEnd(), nil
}

// seek moves a partition (…/partitions/{topic}/{partition}/seek), or every
// partition of a topic assigned to the consumer (…/topics/{topic}/seek).
func (h *Handler) seek(w http.ResponseWriter, r *http.Request) error {
	e, err := h.consumerOf(r)
	if err != nil {
		return err
	}
	topic, partition := r.PathValue("topic"), consumer.AllPartitions
	if s := r.PathValue("partition"); s != "" {
		if partition, err = parseInt32("partition", s); err != nil {
			return err
		}
	}
	var req SeekRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	target, err := h.seekTarget(&req)
	if err != nil {
		return err
	}
	who, err := h.authorize(r, Action{Name: ActionSeek, Consumer: e.name, Topic: topic, Partition: partition, SeekTo: target.String()})
	if err != nil {
		return err
	}
	if !e.knows(topic) {
		return notFound("consumer %q does not consume topic %q (its topics: %s)", e.name, topic, strings.Join(e.c.Topics(), ", "))
	}
	rec := ActionRecord{Who: who, Action: ActionSeek, Consumer: e.name, Topic: topic, Partition: partition,
		Assigned: partition == consumer.AllPartitions || e.assigned(topic, partition)}
	ctx, cancel := h.kafkaCtx(r)
	defer cancel()
	res, seekErr := e.c.SeekTo(ctx, topic, partition, target)
	var moved, abandoned []string
	for _, s := range res {
		rec.Seeked = append(rec.Seeked, SeekedPartition{Partition: s.Partition, From: s.From, To: s.To, Abandoned: s.Abandoned})
		moved = append(moved, fmt.Sprintf("%s/%d from %d to %d", s.Topic, s.Partition, s.From, s.To))
		if len(s.Abandoned) > 0 {
			abandoned = append(abandoned, fmt.Sprintf("%s/%d at %v", s.Topic, s.Partition, s.Abandoned))
		}
	}
	if len(moved) > 0 {
		rec.Detail = fmt.Sprintf("seek to %v: moved %s, and committed", target, strings.Join(moved, ", "))
		if len(abandoned) > 0 {
			rec.Detail += "; the blocking record(s) of " + strings.Join(abandoned, ", ") + " were let go, not dead-lettered"
		}
	}
	switch {
	case seekErr != nil && len(res) > 0: // some partitions moved, not all
		seekErr = &apiError{status: http.StatusBadGateway, msg: rec.Detail + "; but: " + seekErr.Error()}
	case seekErr != nil:
		seekErr = seekError(ctx, e, topic, partition, seekErr)
	}
	h.record(r, &rec, e.c.Group(), seekErr)
	if seekErr != nil {
		return seekErr
	}
	writeJSON(w, http.StatusOK, rec)
	return nil
}

// seekError turns SeekTo's error into an answer.
func seekError(ctx context.Context, e *entry, topic string, partition int32, err error) error {
	where := fmt.Sprintf("%s/%d is not", topic, partition)
	if partition == consumer.AllPartitions {
		where = "no partition of " + topic + " is"
	}
	switch {
	case ctx.Err() != nil && errors.Is(context.Cause(ctx), errTimeout):
		return &apiError{status: http.StatusGatewayTimeout, msg: context.Cause(ctx).Error() + ": " + err.Error()}
	case errors.Is(err, consumer.ErrInvalidSeek):
		return badParam("body", "%v", err)
	case errors.Is(err, consumer.ErrClosed):
		return &apiError{status: http.StatusServiceUnavailable, msg: err.Error()}
	case errors.Is(err, consumer.ErrNotAssigned):
		return &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("%s assigned to consumer %q in this process now, with a known position (another instance of group %q may own it): %v",
			where, e.name, e.c.Group(), err)}
	}
	return &apiError{status: http.StatusBadGateway, msg: err.Error()}
}
