package dev.customdata.standin;

import de.bwaldvogel.mongo.MongoBackend;
import de.bwaldvogel.mongo.MongoCollection;
import de.bwaldvogel.mongo.MongoDatabase;
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.aggregation.Aggregation;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import de.bwaldvogel.mongo.bson.Document;
import de.bwaldvogel.mongo.oplog.Oplog;
import io.netty.channel.Channel;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.stream.Stream;

/**
 * Starts mongo-java-server in memory with an oplog (change streams; see
 * IndexedOplog), taught $expr in $match and $toHashedIndexKey (ExprPipeline),
 * on 127.0.0.1 and a random or given port, then obeys line commands on stdin:
 *
 *   stop   - stop listening and drop client connections; data is kept
 *   start  - listen again on the same port with the same data
 *   (EOF)  - shut down and exit, so the process never outlives its parent
 *
 * Every state change is confirmed with one line on stdout:
 *   "listening 127.0.0.1:PORT", "stopped", "bye".
 */
public final class Launcher {

    /**
     * The Go driver v2 refuses servers below wire version 9 (MongoDB 4.4),
     * and the stand-in's own ServerVersion enum stops at wire 8.
     */
    static final class Mongo44 implements MongoVersion {
        @Override
        public List<Integer> getVersionArray() {
            return List.of(4, 4, 0);
        }

        @Override
        public int getWireVersion() {
            return 9;
        }
    }

    private final MongoBackend backend;
    private MongoServer server;
    private int port;

    private Launcher(int port) {
        HashedIndexKey.selfCheck();
        MemoryBackend memory = new MemoryBackend() {
            @Override
            protected Oplog createOplog() {
                // Real MongoDB's read costs; see IndexedOplog.
                return new IndexedOplog(this, getCursorRegistry());
            }

            @Override
            public Document handleCommand(Channel channel, String databaseName, String command, Document query) {
                if (command.equalsIgnoreCase("aggregate") && query.get("pipeline") instanceof List<?> pipeline) {
                    ExprPipeline rw = ExprPipeline.rewrite(pipeline);
                    if (rw != null) {
                        Document q = new Document(query);
                        q.put("pipeline", rw.stages);
                        boolean changeStream = !rw.stages.isEmpty() && rw.stages.get(0).containsKey("$changeStream");
                        if (changeStream || rw.hashedPaths.isEmpty()) {
                            // The oplog's cursor is made within this call (IndexedOplog.createCursor).
                            IndexedOplog.HASHED_PATHS.set(rw.hashedPaths);
                            try {
                                return super.handleCommand(channel, databaseName, command, q);
                            } finally {
                                IndexedOplog.HASHED_PATHS.remove();
                            }
                        }
                        return aggregateWithHashes(databaseName, q, rw);
                    }
                }
                return super.handleCommand(channel, databaseName, command, query);
            }

            /** A collection aggregate that hashes: its input documents get ExprPipeline's hidden hashes. */
            private Document aggregateWithHashes(String databaseName, Document query, ExprPipeline rw) {
                String collName = (String) query.get("aggregate");
                MongoDatabase db = resolveDatabase(databaseName);
                MongoCollection<?> coll = db.resolveCollection(collName, false);
                Stream<Document> input = coll == null ? Stream.empty()
                    : coll.handleQueryAsStream(new Document()).map(d -> ExprPipeline.withHashes(d, rw.hashedPaths));
                List<Document> result = Aggregation.fromPipeline(rw.stages, this::resolveDatabase, db, coll, oplog).runStages(input);
                return new Document("cursor", new Document("id", 0L).append("ns", databaseName + "." + collName)
                    .append("firstBatch", result)).append("ok", 1.0);
            }
        };
        memory.version(new Mongo44());
        memory.enableOplog();
        this.backend = keepDataOnClose(memory);
        this.port = port;
    }

    /**
     * MongoServer.shutdownNow() closes its backend, which drops every
     * database. To simulate an outage that keeps data, the server gets a view
     * of the backend whose close() does nothing.
     */
    private static MongoBackend keepDataOnClose(MongoBackend real) {
        return (MongoBackend) Proxy.newProxyInstance(
            MongoBackend.class.getClassLoader(),
            new Class<?>[] {MongoBackend.class},
            (proxy, method, args) -> {
                if (method.getName().equals("close") && method.getParameterCount() == 0) {
                    return null;
                }
                try {
                    return method.invoke(real, args);
                } catch (InvocationTargetException e) {
                    throw e.getCause();
                }
            });
    }

    private void start() {
        server = new MongoServer(backend);
        server.bind("127.0.0.1", port);
        InetSocketAddress addr = server.getLocalAddress();
        port = addr.getPort();
        say("listening 127.0.0.1:" + port);
    }

    private void stop() {
        if (server != null) {
            // shutdownNow closes client channels but not the backend's data:
            // the backend outlives the server object.
            server.stopListening();
            server.shutdownNow();
            server = null;
        }
        say("stopped");
    }

    private static void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    public static void main(String[] args) throws Exception {
        int port = args.length > 0 ? Integer.parseInt(args[0]) : 0;
        Launcher l = new Launcher(port);
        l.start();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            switch (line.trim()) {
                case "stop" -> l.stop();
                case "start" -> {
                    if (l.server == null) {
                        l.start();
                    } else {
                        say("listening 127.0.0.1:" + l.port);
                    }
                }
                default -> say("unknown command: " + line.trim());
            }
        }
        if (l.server != null) {
            l.server.shutdownNow();
        }
        say("bye");
        System.exit(0);
    }
}
