package dev.customdata.standin;

import de.bwaldvogel.mongo.bson.Document;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * What mongo-java-server 1.47 lacks for the notifier's partition filter,
 * taught by rewriting an aggregate's pipeline before the library parses
 * it:
 *
 *   - a $match with $expr: the library's matcher has no $expr; the
 *     expression goes to a $redact stage ({$cond: [expr, $$KEEP, $$PRUNE]}),
 *     which keeps exactly the documents a $match with $expr keeps (other
 *     keys of the $match stay a $match before it);
 *   - $toHashedIndexKey, of a field path only: replaced by a path into a
 *     field the stand-in adds to each input document
 *     (HIDDEN.h0, h1, …: HashedIndexKey of the path's value), removed again
 *     at the end of the pipeline. A $mod of it by a constant integer is
 *     computed there too, exactly: the library's $mod goes through
 *     doubles, which lose the low bits of a 64-bit hash.
 *
 * The hashes are of the pipeline's input documents (change events, or the
 * collection's documents), which is where the notifier uses it.
 */
final class ExprPipeline {

    static final String HIDDEN = "__standinHashed";

    /** A value the stand-in computes into HIDDEN.h<i>: the hash of path, modulo mod (0: none). */
    record Hashed(String path, long mod) {
    }

    /** The rewritten stages, and the values computed into HIDDEN.h<i>. */
    final List<Document> stages = new ArrayList<>();
    final List<Hashed> hashedPaths = new ArrayList<>();

    private ExprPipeline() {
    }

    /** Rewrites pipeline; null when it needs nothing of this. */
    static ExprPipeline rewrite(List<?> pipeline) {
        ExprPipeline out = new ExprPipeline();
        boolean changed = false;
        for (Object o : pipeline) {
            Document stage = (Document) o;
            if (stage.get("$match") instanceof Document match && match.containsKey("$expr")) {
                Document rest = new Document(match);
                Object expr = rest.remove("$expr");
                if (!rest.isEmpty()) {
                    out.stages.add(new Document("$match", rest));
                }
                List<Object> cond = new ArrayList<>(List.of(out.expression(expr), "$$KEEP", "$$PRUNE"));
                out.stages.add(new Document("$redact", new Document("$cond", cond)));
                changed = true;
            } else {
                Document rewritten = (Document) out.expression(stage);
                changed |= !rewritten.equals(stage);
                out.stages.add(rewritten);
            }
        }
        if (!out.hashedPaths.isEmpty()) {
            out.stages.add(new Document("$unset", HIDDEN));
        }
        return changed || !out.hashedPaths.isEmpty() ? out : null;
    }

    private Object expression(Object e) {
        if (e instanceof Document d) {
            if (d.size() == 1 && d.get("$mod") instanceof List<?> args && args.size() == 2
                && hashedPath(args.get(0)) != null && args.get(1) instanceof Number m && m.longValue() != 0) {
                hashedPaths.add(new Hashed(hashedPath(args.get(0)), m.longValue()));
                return "$" + HIDDEN + ".h" + (hashedPaths.size() - 1);
            }
            if (d.size() == 1 && d.containsKey("$toHashedIndexKey")) {
                String path = hashedPath(d);
                if (path == null) {
                    throw new IllegalArgumentException("stand-in: $toHashedIndexKey of a field path only, got " + d);
                }
                hashedPaths.add(new Hashed(path, 0));
                return "$" + HIDDEN + ".h" + (hashedPaths.size() - 1);
            }
            Document out = new Document();
            for (Map.Entry<String, Object> en : d.entrySet()) {
                out.put(en.getKey(), expression(en.getValue()));
            }
            return out;
        }
        if (e instanceof List<?> l) {
            List<Object> out = new ArrayList<>(l.size());
            for (Object x : l) {
                out.add(expression(x));
            }
            return out;
        }
        return e;
    }

    /** The field path e hashes ({$toHashedIndexKey: "$path"}), else null. */
    private static String hashedPath(Object e) {
        if (!(e instanceof Document d) || d.size() != 1 || !d.containsKey("$toHashedIndexKey")) {
            return null;
        }
        Object arg = d.get("$toHashedIndexKey");
        if (arg instanceof List<?> l && l.size() == 1) {
            arg = l.get(0);
        }
        if (!(arg instanceof String path) || !path.startsWith("$") || path.startsWith("$$")) {
            return null;
        }
        return path.substring(1);
    }

    /** doc with HIDDEN set (a copy), for the pipeline's input. */
    static Document withHashes(Document doc, List<Hashed> paths) {
        if (paths.isEmpty()) {
            return doc;
        }
        Document hashes = new Document();
        for (int i = 0; i < paths.size(); i++) {
            Hashed h = paths.get(i);
            long v = HashedIndexKey.hash64(valueAt(doc, h.path()));
            // Java's % keeps the dividend's sign, as MongoDB's $mod does.
            hashes.put("h" + i, h.mod() == 0 ? v : v % h.mod());
        }
        Document out = new Document(doc);
        out.put(HIDDEN, hashes);
        return out;
    }

    /** The value at a dotted path, null when missing (hashed as null). */
    private static Object valueAt(Document doc, String path) {
        Object v = doc;
        for (String part : path.split("\\.")) {
            if (!(v instanceof Document d)) {
                return null;
            }
            v = d.get(part);
        }
        return v;
    }
}
