package org.shopsearch.es;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The per-hit outcomes of this node's recent rescores, for the later phases of the same search
 * (explain and the outcome fetch sub-phase run on a fresh search context, which does not see the
 * query phase's). Keyed by the shard's reader, the query text and the Lucene doc id; the oldest
 * entries go once {@code kept} are held. Owned by the plugin's rescorer, never shared statically.
 */
final class Outcomes {
    static final int KEPT = 20_000;

    record Key(Object reader, String query, int doc) {}

    private final Map<Key, Outcome> kept;

    Outcomes(int capacity) {
        this.kept = new LinkedHashMap<>(1024, 0.75f, false) {
            @Override
            protected boolean removeEldestEntry(Map.Entry<Key, Outcome> eldest) {
                return size() > capacity;
            }
        };
    }

    void put(Object reader, String query, Map<Integer, Outcome> byDoc) {
        synchronized (kept) {
            byDoc.forEach((doc, outcome) -> kept.put(new Key(reader, query, doc), outcome));
        }
    }

    /** The outcome of `doc` (a top-level doc id) in the latest rescore of `query` on `reader`; null if none is kept. */
    Outcome get(Object reader, String query, int doc) {
        synchronized (kept) {
            return kept.get(new Key(reader, query, doc));
        }
    }

    int size() {
        synchronized (kept) {
            return kept.size();
        }
    }
}
