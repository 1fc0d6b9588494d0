package dev.customdata.standin;

import de.bwaldvogel.mongo.MongoBackend;
import de.bwaldvogel.mongo.backend.AbstractCursor;
import de.bwaldvogel.mongo.backend.Cursor;
import de.bwaldvogel.mongo.backend.CursorRegistry;
import de.bwaldvogel.mongo.backend.aggregation.Aggregation;
import de.bwaldvogel.mongo.bson.BsonTimestamp;
import de.bwaldvogel.mongo.bson.Document;
import de.bwaldvogel.mongo.oplog.Oplog;
import de.bwaldvogel.mongo.oplog.OplogCursor;
import de.bwaldvogel.mongo.oplog.OplogPosition;

import java.time.Clock;
import java.util.List;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Function;
import java.util.stream.Stream;

/**
 * The stand-in's change-stream source: the same change events as
 * mongo-java-server's own collection-backed oplog (same shapes, same
 * quirks, which the README's "Stand-in differences" lists), at the cost
 * real MongoDB has. The library's oplog rescans and sorts every entry ever
 * written on each getMore and finds an update's document by scanning its
 * collection; benchmarks then measured the stand-in's scans rather than the
 * worker (see ../shared/STANDIN-NOTES.md). Here entries are kept in
 * timestamp order, a read starts at its position, and updateLookup uses
 * the _id index.
 *
 * Entries are never trimmed, as in the library (its oplog is not capped
 * either). It is not stored in local.oplog.rs: nothing here reads that.
 */
final class IndexedOplog implements Oplog {

    /**
     * The paths the change stream being opened hashes (ExprPipeline), set
     * by the launcher around the aggregate that opens it.
     */
    static final ThreadLocal<List<ExprPipeline.Hashed>> HASHED_PATHS = new ThreadLocal<>();

    private final MongoBackend backend;
    private final CursorRegistry cursors;
    private final Clock clock;
    /** Entries by timestamp value (seconds << 32 | increment). */
    private final ConcurrentSkipListMap<Long, Entry> entries = new ConcurrentSkipListMap<>();
    /** Collection drops, for the resumeAfter check. */
    private final List<Entry> drops = new CopyOnWriteArrayList<>();
    /** Guarded by this: timestamps are handed out and entries added together. */
    private int increment;

    private record Entry(BsonTimestamp ts, String op, String namespace, Document o, Document o2) {
    }

    IndexedOplog(MongoBackend backend, CursorRegistry cursors) {
        this.backend = backend;
        this.cursors = cursors;
        this.clock = backend.getClock();
    }

    /**
     * Appends entries with increasing timestamps. Taking the timestamp and
     * publishing the entry under one lock means a reader can never see a
     * later entry before an earlier one (and move its cursor past it).
     */
    private synchronized void append(String op, String namespace, Document o, Document o2) {
        BsonTimestamp ts = new BsonTimestamp(clock.instant(), ++increment);
        Entry e = new Entry(ts, op, namespace, o, o2);
        entries.put(ts.getValue(), e);
        if (op.equals("c")) {
            drops.add(e);
        }
    }

    private synchronized BsonTimestamp now() {
        return new BsonTimestamp(clock.instant(), increment);
    }

    @Override
    public void handleInsert(String namespace, List<Document> documents) {
        for (Document d : documents) {
            append("i", namespace, d.cloneDeeply(), null);
        }
    }

    @Override
    public void handleUpdate(String namespace, Document selector, Document query, List<Object> modifiedIds) {
        for (Object id : modifiedIds) {
            append("u", namespace, query, new Document("_id", id));
        }
    }

    @Override
    public void handleDelete(String namespace, Document query, List<Object> deletedIds) {
        for (Object id : deletedIds) {
            append("d", namespace, new Document("_id", id), null);
        }
    }

    @Override
    public void handleDropCollection(String namespace) {
        int dot = namespace.indexOf('.');
        append("c", namespace.substring(0, dot) + ".$cmd", new Document("drop", namespace.substring(dot + 1)), null);
    }

    @Override
    public Cursor createCursor(Document changeStream, String namespace, Aggregation aggregation) {
        Document startAfter = (Document) changeStream.get("startAfter");
        Document resumeAfter = (Document) changeStream.get("resumeAfter");
        BsonTimestamp startAtOperationTime = (BsonTimestamp) changeStream.get("startAtOperationTime");
        OplogPosition start;
        if (startAfter != null) {
            start = OplogPosition.fromDocument(startAfter);
        } else if (resumeAfter != null) {
            start = OplogPosition.fromDocument(resumeAfter);
            if (droppedAtOrBefore(start, namespace)) {
                return new InvalidateCursor(start);
            }
        } else if (startAtOperationTime != null) {
            start = new OplogPosition(startAtOperationTime).inclusive();
        } else {
            start = new OplogPosition(now());
        }
        List<ExprPipeline.Hashed> hashed = List.copyOf(HASHED_PATHS.get() == null ? List.of() : HASHED_PATHS.get());
        Function<OplogPosition, Stream<Document>> read = position -> read(changeStream, position, aggregation, namespace, hashed);
        OplogCursor cursor = new OplogCursor(cursors.generateCursorId(), read, start);
        cursors.add(cursor);
        return cursor;
    }

    /** A resume after the collection's drop: the library answers with an invalidate. */
    private boolean droppedAtOrBefore(OplogPosition position, String namespace) {
        int dot = namespace.indexOf('.');
        String cmd = namespace.substring(0, dot) + ".$cmd";
        Document drop = new Document("drop", namespace.substring(dot + 1));
        return drops.stream().anyMatch(e -> position.isAfter(new OplogPosition(e.ts()).inclusive())
            && e.namespace().equals(cmd) && e.o().equals(drop));
    }

    private Stream<Document> read(Document changeStream, OplogPosition position, Aggregation aggregation, String namespace,
                                  List<ExprPipeline.Hashed> hashed) {
        // The position's own timestamp, then isAfter decides inclusive or not.
        long from = Long.parseLong(position.toHexString(), 16);
        Stream<Document> events = entries.tailMap(from, true).values().stream()
            .filter(e -> inNamespace(e.namespace(), namespace))
            .filter(e -> new OplogPosition(e.ts()).isAfter(position))
            .map(e -> ExprPipeline.withHashes(toChangeEvent(e, changeStream), hashed));
        return aggregation.runStagesAsStream(events);
    }

    /** The watched collection's entries, and commands on its database. */
    private static boolean inNamespace(String entryNamespace, String watched) {
        if (entryNamespace.equals(watched)) {
            return true;
        }
        int dot = watched.indexOf('.');
        return entryNamespace.equals(watched.substring(0, dot) + ".$cmd");
    }

    private Document toChangeEvent(Entry e, Document changeStream) {
        Document id = new Document("_data", new OplogPosition(e.ts()).toHexString());
        if (e.op().equals("c")) {
            String command = e.o().keySet().iterator().next();
            return new Document().append("_id", id).append("operationType", command).append("clusterTime", e.ts());
        }
        Document documentKey;
        Document fullDocument;
        String operationType;
        switch (e.op()) {
            case "i" -> {
                operationType = "insert";
                documentKey = new Document("_id", e.o().get("_id"));
                fullDocument = e.o();
            }
            case "u" -> {
                operationType = "update";
                // {_id}, as MongoDB has it (the library's own oplog puts the
                // update spec there): partitions hash documentKey._id.
                documentKey = new Document("_id", e.o2().get("_id"));
                fullDocument = lookUp(e, changeStream);
            }
            case "d" -> {
                operationType = "delete";
                documentKey = e.o();
                fullDocument = null;
            }
            default -> throw new IllegalStateException("unknown oplog entry " + e.op());
        }
        return new Document()
            .append("_id", id)
            .append("operationType", operationType)
            .append("fullDocument", fullDocument)
            .append("documentKey", documentKey)
            .append("clusterTime", e.ts());
    }

    /** updateLookup by _id, else (or when gone) the $set/$unset delta, as the library does. */
    private Document lookUp(Entry e, Document changeStream) {
        Document delta = new Document();
        for (String op : new String[] {"$set", "$unset"}) {
            if (e.o().get(op) instanceof Document d) {
                delta.appendAll(d);
            }
        }
        if (!"updateLookup".equals(changeStream.get("fullDocument"))) {
            return delta;
        }
        int dot = e.namespace().indexOf('.');
        Object id = e.o2().get("_id");
        return backend.resolveDatabase(e.namespace().substring(0, dot))
            .resolveCollection(e.namespace().substring(dot + 1), true)
            .handleQueryAsStream(new Document("_id", id))
            .filter(d -> id.equals(d.get("_id")))
            .findFirst()
            .orElse(delta);
    }

    /** The single invalidate event the library sends for a resume after a drop. */
    private static final class InvalidateCursor extends AbstractCursor {
        private final OplogPosition position;

        InvalidateCursor(OplogPosition position) {
            super(0);
            this.position = position;
        }

        @Override
        public boolean isEmpty() {
            return false;
        }

        @Override
        public List<Document> takeDocuments(int numberToReturn) {
            return List.of(new Document()
                .append("_id", new Document("_data", position.toHexString()))
                .append("operationType", "invalidate"));
        }
    }
}
