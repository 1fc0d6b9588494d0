package chaos

import (
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
)

func TestReplay(t *testing.T) {
	t1 := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	t2, t3 := t1.Add(time.Minute), t1.Add(-time.Hour)
	create := func(at time.Time) *lifeEvent {
		return &lifeEvent{op: events.OperationCreate, at: at, acked: true, epoch: 1, seq: 1}
	}
	del := &lifeEvent{op: events.OperationDelete, acked: true, epoch: 1, seq: 1}
	unknown := func(ev *lifeEvent) *lifeEvent { c := *ev; c.acked = false; return &c }
	wiped := func(ev *lifeEvent, settled bool) *lifeEvent { c := *ev; c.epoch = 0; c.settled = settled; return &c }
	absent, at := docState{}, func(t time.Time) docState { return docState{exists: true, createdAt: t.UnixMilli()} }
	for _, tc := range []struct {
		name string
		evs  []*lifeEvent
		want []docState
	}{
		{"no events: never created", nil, []docState{absent}},
		{"CREATE inserts with its time", []*lifeEvent{create(t1)}, []docState{at(t1)}},
		{"a CREATE of an existing document changes nothing", []*lifeEvent{create(t1), create(t2), create(t3)}, []docState{at(t1)}},
		{"DELETE removes; a later CREATE inserts anew", []*lifeEvent{create(t1), del, create(t3)}, []docState{at(t3)}},
		{"DELETE of a missing document changes nothing", []*lifeEvent{del, del}, []docState{absent}},
		{"last DELETE wins", []*lifeEvent{create(t1), del}, []docState{absent}},
		{"unknown outcome: either", []*lifeEvent{create(t1), unknown(del)}, []docState{absent, at(t1)}},
		{"unknown CREATE then a certain one", []*lifeEvent{unknown(create(t1)), create(t2)}, []docState{at(t1), at(t2)}},
		{"acknowledged before a wipe, never seen settled: either", []*lifeEvent{wiped(create(t1), false)}, []docState{absent, at(t1)}},
		{"acknowledged before a wipe and seen settled: applied", []*lifeEvent{wiped(create(t1), true), create(t2)}, []docState{at(t1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := replay(tc.evs, 1)
			want := slices.Clone(tc.want)
			slices.SortFunc(want, func(a, b docState) int { return strings.Compare(a.String(), b.String()) })
			if !slices.Equal(got, want) {
				t.Errorf("replay = %v, want %v", got, want)
			}
		})
	}
}

func TestLifecycleState(t *testing.T) {
	t1 := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	doc := func(d bson.D) bson.Raw { b, _ := bson.Marshal(d); return b }
	oid := bson.NewObjectID()
	for _, tc := range []struct {
		name    string
		docs    []bson.Raw
		want    docState
		wantErr bool
	}{
		{"none", nil, docState{}, false},
		{"as CREATE inserts it", []bson.Raw{doc(bson.D{{Key: "_id", Value: oid}, {Key: "userId", Value: "life-001"}, {Key: "createdAt", Value: t1}})},
			docState{exists: true, createdAt: t1.UnixMilli()}, false},
		{"an extra field", []bson.Raw{doc(bson.D{{Key: "_id", Value: oid}, {Key: "userId", Value: "life-001"}, {Key: "createdAt", Value: t1}, {Key: "lastLogin", Value: t1}})},
			docState{}, true},
		{"two documents", []bson.Raw{doc(bson.D{{Key: "_id", Value: oid}}), doc(bson.D{{Key: "_id", Value: oid}})}, docState{}, true},
		{"createdAt not a date", []bson.Raw{doc(bson.D{{Key: "_id", Value: oid}, {Key: "userId", Value: "life-001"}, {Key: "createdAt", Value: "x"}})},
			docState{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := lifecycleState(tc.docs)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("lifecycleState = %v, %v; want %v (error %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
