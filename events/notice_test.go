package events

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// noticeCase is a notice and how DecodeNotice reads it.
type noticeCase struct {
	name    string
	in      string
	want    Notice
	wantErr string
}

// noticeCases are the notices TestDecodeNotice decodes (and the schema
// test compares with events/schema).
func noticeCases() []noticeCase {
	published := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	return []noticeCase{
		{
			name: "user notice",
			in: `{"schemaVersion":1,"kind":"user","userId":"a.b","documentId":"66310c1e9d1f0a0001a1b2c3","operation":"update",` +
				`"changedFields":["lastLogin"],"clusterTime":{"t":1714564800,"i":3},"publishedAt":"2024-05-01T12:00:00Z"}`,
			want: Notice{SchemaVersion: 1, Kind: NoticeUser, UserID: "a.b", DocumentID: "66310c1e9d1f0a0001a1b2c3", Operation: "update",
				ChangedFields: []string{"lastLogin"}, ClusterTime: &ClusterTime{T: 1714564800, I: 3}, PublishedAt: published},
		},
		{
			name: "delete notice naming only the document",
			in:   `{"schemaVersion":1,"kind":"user","documentId":"d1","operation":"delete","publishedAt":"2024-05-01T12:00:00Z"}`,
			want: Notice{SchemaVersion: 1, Kind: NoticeUser, DocumentID: "d1", Operation: "delete", PublishedAt: published},
		},
		{
			name: "flush-all",
			in:   `{"schemaVersion":1,"kind":"flush_all","reason":"history_lost","operation":"invalidate","publishedAt":"2024-05-01T12:00:00Z"}`,
			want: Notice{SchemaVersion: 1, Kind: NoticeFlushAll, Reason: FlushHistoryLost, Operation: "invalidate", PublishedAt: published},
		},
		{
			name: "unknown fields from a later schema are ignored",
			in:   `{"schemaVersion":2,"kind":"user","userId":"u1","newField":{"x":1},"publishedAt":"2024-05-01T12:00:00Z"}`,
			want: Notice{SchemaVersion: 2, Kind: NoticeUser, UserID: "u1", PublishedAt: published},
		},
		{name: "user notice without ids", in: `{"schemaVersion":1,"kind":"user"}`, wantErr: "neither user nor document"},
		{name: "unknown kind", in: `{"schemaVersion":1,"kind":"partial","userId":"u1"}`, wantErr: "unknown kind"},
		{name: "missing kind", in: `{"schemaVersion":1,"userId":"u1"}`, wantErr: "unknown kind"},
		{name: "malformed", in: `{"kind":`, wantErr: "decode notice"},
		{name: "empty", in: ``, wantErr: "decode notice"},
		{name: "wrong type", in: `{"kind":"user","userId":1}`, wantErr: "decode notice"},
	}
}

func TestDecodeNotice(t *testing.T) {
	for _, tt := range noticeCases() {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeNotice([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("DecodeNotice = %+v, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestNoticeRoundTrip(t *testing.T) {
	for _, n := range []Notice{
		{SchemaVersion: NoticeSchemaVersion, Kind: NoticeUser, UserID: "ü.*>", Operation: "insert",
			ClusterTime: &ClusterTime{T: 1, I: 2}, Oversize: true, PublishedAt: time.Date(2024, 5, 1, 12, 0, 0, 5, time.UTC)},
		{SchemaVersion: NoticeSchemaVersion, Kind: NoticeFlushAll, Reason: FlushNoCheckpoint, PublishedAt: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)},
	} {
		b, err := json.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeNotice(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, n) {
			t.Errorf("round trip: got %+v, want %+v", got, n)
		}
	}
}

func TestClusterTime(t *testing.T) {
	ct := ClusterTime{T: 1714564800, I: 7}
	if got, want := ct.Time(), time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC); !got.Equal(want) || got.Location() != time.UTC {
		t.Fatalf("Time() = %v, want %v", got, want)
	}
}
