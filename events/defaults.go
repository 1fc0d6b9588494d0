package events

// Defaults of the contract between the worker and token issuers: where
// custom data lives, where notices go, where dead letters go. The worker's packages
// (worker/customdata, worker/notify, triggers) and the issuer package
// take their defaults from here, so the two sides cannot drift apart.
const (
	// DefaultDatabase and DefaultCollection name the custom-data
	// collection (CUSTOMDATA_MONGODB_DATABASE, CUSTOMDATA_MONGODB_COLLECTION).
	DefaultDatabase   = "app"
	DefaultCollection = "custom_user_data"
	// DefaultUserIDField is the field of each document holding the user
	// id (CUSTOMDATA_USER_ID_FIELD).
	DefaultUserIDField = "userId"
	// DefaultNoticeStream is the JetStream stream of notices
	// (CUSTOMDATA_NOTICE_STREAM); its subjects are DefaultNoticePrefix.>.
	DefaultNoticeStream = "CUSTOMDATA_NOTICES"
	// DefaultOversizeBytes: documents larger than this are flagged
	// oversize in notices and by issuers (CUSTOMDATA_OVERSIZE_BYTES).
	DefaultOversizeBytes = 16384
	// DefaultDeadLetterStream and DefaultDeadLetterPrefix name the
	// dead-letter stream and its subjects, <prefix>.<reason>
	// (CUSTOMDATA_DLQ_STREAM, CUSTOMDATA_DLQ_SUBJECT_PREFIX): the worker
	// dead-letters the events it refuses there, and producers that take
	// webhooks (customdata-bridge) the bodies they cannot map.
	DefaultDeadLetterStream = "AUTH_EVENTS_DLQ"
	DefaultDeadLetterPrefix = "auth.deadletter"
)
