package org.shopsearch.es;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The per-hit outcomes of this node's recent rescores, for the later phases of the same search
 * (explain and the outcome fetch sub-phase run on a fresh search context, which does not see the
 * query phase's). One entry per shard's rescore, keyed by the shard's reader and the query text,
 * holding that rescore's outcomes by Lucene doc id: one short locked put per rescore (not one per
 * hit), and one lookup per fetch. The oldest go once {@code kept} rescores are held. Owned by the
 * plugin's rescorer, never shared statically.
 */
final class Outcomes {
    static final int KEPT = 500;  // rescores; each holds its window's hits (about 100 small records)

    record Key(Object reader, String query) {}

    private final Map<Key, Map<Integer, Outcome>> kept;

    Outcomes(int capacity) {
        this.kept = new LinkedHashMap<>(64, 0.75f, false) {
            @Override
            protected boolean removeEldestEntry(Map.Entry<Key, Map<Integer, Outcome>> eldest) {
                return size() > capacity;
            }
        };
    }

    /** Keeps one rescore's outcomes (`byDoc` is not changed afterwards); the latest rescore of the same query on the same reader replaces it. */
    void put(Object reader, String query, Map<Integer, Outcome> byDoc) {
        Key key = new Key(reader, query);
        synchronized (kept) {
            kept.remove(key);  // re-inserted last: the newest rescore goes last
            kept.put(key, byDoc);
        }
    }

    /** The latest rescore of `query` on `reader`, by doc id; null if none is kept. */
    Map<Integer, Outcome> rescore(Object reader, String query) {
        synchronized (kept) {
            return kept.get(new Key(reader, query));
        }
    }

    /** The outcome of `doc` (a top-level doc id) in the latest rescore of `query` on `reader`; null if none is kept. */
    Outcome get(Object reader, String query, int doc) {
        Map<Integer, Outcome> byDoc = rescore(reader, query);
        return byDoc == null ? null : byDoc.get(doc);
    }

    /** Rescores kept. */
    int size() {
        synchronized (kept) {
            return kept.size();
        }
    }
}
