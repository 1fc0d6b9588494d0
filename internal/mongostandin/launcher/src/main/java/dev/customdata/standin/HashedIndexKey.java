package dev.customdata.standin;

import de.bwaldvogel.mongo.bson.Document;
import de.bwaldvogel.mongo.bson.ObjectId;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Instant;
import java.util.Date;
import java.util.Map;
import java.util.UUID;

/**
 * MongoDB's hashed-index key ($toHashedIndexKey), computed as the server
 * does (src/mongo/db/hasher.cpp, BSONElementHasher::hash64 with seed 0):
 * MD5 over the seed (int32), then per element its canonical type (int32,
 * little-endian) and its value bytes, numbers squashed to an int64;
 * embedded documents hash each element with its field name, then the end
 * marker. The result is the digest's first 8 bytes read as a little-endian
 * int64. A missing value hashes as null, as the server's expression does.
 *
 * Checked against the server's own vectors: {check: 42} gives
 * -944302157085130861 (hasher.cpp's startup test) and "string to hash"
 * gives 763543691661428748 (the manual's example).
 */
final class HashedIndexKey {

    private HashedIndexKey() {
    }

    static long hash64(Object value) {
        MessageDigest md5;
        try {
            md5 = MessageDigest.getInstance("MD5");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        md5.update(int32(0)); // the seed
        element(md5, value, null);
        return ByteBuffer.wrap(md5.digest(), 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
    }

    private static void element(MessageDigest md5, Object value, String fieldName) {
        md5.update(int32(canonicalType(value)));
        if (fieldName != null) {
            md5.update(fieldName.getBytes(StandardCharsets.UTF_8));
            md5.update((byte) 0);
        }
        if (value == null) {
            return; // null has no value bytes
        }
        if (value instanceof Integer || value instanceof Long) {
            md5.update(int64(((Number) value).longValue()));
        } else if (value instanceof Double d) {
            md5.update(int64(safeLongForHash(d)));
        } else if (value instanceof String s) {
            byte[] b = s.getBytes(StandardCharsets.UTF_8);
            md5.update(int32(b.length + 1));
            md5.update(b);
            md5.update((byte) 0);
        } else if (value instanceof ObjectId id) {
            md5.update(id.toByteArray());
        } else if (value instanceof Boolean b) {
            md5.update((byte) (b ? 1 : 0));
        } else if (value instanceof Instant t) {
            md5.update(int64(t.toEpochMilli()));
        } else if (value instanceof Date t) {
            md5.update(int64(t.getTime()));
        } else if (value instanceof Document doc) {
            for (Map.Entry<String, Object> e : doc.entrySet()) {
                element(md5, e.getValue(), e.getKey());
            }
            // The end-of-object element: type 0, empty name.
            md5.update(int32(0));
            md5.update((byte) 0);
        } else {
            throw new IllegalArgumentException("stand-in: $toHashedIndexKey of a " + value.getClass().getSimpleName()
                + " is not implemented (ObjectId, string, numbers, bool, date, null and documents are)");
        }
    }

    /** BSON's canonical type order (canonicalizeBSONType). */
    private static int canonicalType(Object value) {
        if (value == null) {
            return 5;
        }
        if (value instanceof Number) {
            return 10;
        }
        if (value instanceof String) {
            return 15;
        }
        if (value instanceof Document) {
            return 20;
        }
        if (value instanceof UUID) {
            return 30;
        }
        if (value instanceof ObjectId) {
            return 35;
        }
        if (value instanceof Boolean) {
            return 40;
        }
        if (value instanceof Instant || value instanceof Date) {
            return 45;
        }
        return 0;
    }

    /** The server's safeNumberLongForHash for doubles. */
    private static long safeLongForHash(double d) {
        if (Double.isNaN(d)) {
            return 0;
        }
        if (d >= 0x1p63) {
            return Long.MAX_VALUE;
        }
        if (d < -0x1p63) {
            return Long.MIN_VALUE;
        }
        return (long) d;
    }

    private static byte[] int32(int v) {
        return ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(v).array();
    }

    private static byte[] int64(long v) {
        return ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(v).array();
    }

    /** Self-check at start: the stand-in refuses to run with a wrong hash. */
    static void selfCheck() {
        long a = hash64(42);
        long b = hash64("string to hash");
        if (a != -944302157085130861L || b != 763543691661428748L) {
            throw new IllegalStateException("stand-in: $toHashedIndexKey differs from MongoDB's: " + a + ", " + b);
        }
    }
}
