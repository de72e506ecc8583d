package org.shopsearch.es;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;

import org.apache.lucene.index.FieldInfo;
import org.apache.lucene.index.IndexReader;
import org.apache.lucene.index.StoredFieldVisitor;
import org.apache.lucene.index.StoredFields;
import org.apache.lucene.search.Explanation;
import org.apache.lucene.search.IndexSearcher;
import org.apache.lucene.search.ScoreDoc;
import org.apache.lucene.search.TopDocs;
import org.apache.lucene.util.BytesRef;
import org.elasticsearch.ElasticsearchStatusException;
import org.elasticsearch.common.bytes.BytesArray;
import org.elasticsearch.common.xcontent.XContentHelper;
import org.elasticsearch.index.mapper.Uid;
import org.elasticsearch.rest.RestStatus;
import org.elasticsearch.search.rescore.RescoreContext;
import org.elasticsearch.search.rescore.Rescorer;

import shopsearch.reranker.v1.RerankerOuterClass.Candidate;
import shopsearch.reranker.v1.RerankerOuterClass.Item;
import shopsearch.reranker.v1.RerankerOuterClass.RerankRequest;
import shopsearch.reranker.v1.RerankerOuterClass.RerankResponse;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Reranks one shard's BM25 window through the reranker service.
 *
 * Scores, so that shards merge right: a hit the model scored gets r(s) > 0 (s its model score,
 * r monotone: 1 + s for s >= 0, 1 / (1 - s) below); every other hit (past the window, one the
 * model could not score, or all of them when the call failed) gets t(bm25) < 0 (monotone in its
 * BM25 score). So on every shard and after the merge, reranked hits come first in the model's
 * order, then the rest in BM25 order. Explain reports the model's own score.
 */
public final class ShopsearchRescorer implements Rescorer {
    public static final ShopsearchRescorer INSTANCE = new ShopsearchRescorer();
    private static final String ID_FIELD = "_id";
    private static final String SOURCE_FIELD = "_source";

    /** Per-hit outcome, kept briefly so explain (a later fetch phase on this node) can report it. */
    record Outcome(boolean reranked, float modelScore, float bm25, int bm25Rank, int rank, int window, String model,
                   String reason) {}

    record Key(Object reader, String query, int doc) {}

    private static final int OUTCOMES_KEPT = 20_000;
    private static final Map<Key, Outcome> outcomes = new LinkedHashMap<>(1024, 0.75f, false) {
        @Override
        protected boolean removeEldestEntry(Map.Entry<Key, Outcome> eldest) {
            return size() > OUTCOMES_KEPT;
        }
    };

    static final class Context extends RescoreContext {
        final String queryText;
        final boolean sendText;
        final String modelVersion;

        Context(int windowSize, String queryText, boolean sendText, String modelVersion) {
            super(windowSize, INSTANCE);
            this.queryText = queryText;
            this.sendText = sendText;
            this.modelVersion = modelVersion;
        }
    }

    static float reranked(float s) {
        return s >= 0 ? 1f + s : 1f / (1f - s);
    }

    static float notReranked(float bm25) {
        return bm25 >= 0 ? -1f / (1f + bm25) : -2f + 1f / (1f - bm25);
    }

    private static Object readerKey(IndexSearcher searcher) {
        IndexReader reader = searcher.getIndexReader();
        IndexReader.CacheHelper helper = reader.getReaderCacheHelper();
        return helper != null ? helper.getKey() : reader;
    }

    @Override
    public TopDocs rescore(TopDocs topDocs, IndexSearcher searcher, RescoreContext rescoreContext) throws IOException {
        if (topDocs == null || topDocs.scoreDocs.length == 0) return topDocs;
        Context ctx = (Context) rescoreContext;
        ScoreDoc[] docs = topDocs.scoreDocs;
        int window = Math.min(ctx.getWindowSize(), docs.length);
        RerankerLink link = RerankerLink.get();
        Object reader = readerKey(searcher);
        if (link == null) {
            return fallback(topDocs, ctx, reader, window, null, "not_ready", "the plugin has not started");
        }
        RerankRequest request;
        try {
            request = buildRequest(docs, window, searcher, ctx, link);
        } catch (RuntimeException e) {
            return fallback(topDocs, ctx, reader, window, link, "plugin_error", "reading the hits: " + e);
        }
        ctx.checkCancellation();
        RerankResponse response;
        try {
            response = link.rerank(request);
        } catch (StatusRuntimeException e) {
            Status.Code code = e.getStatus().getCode();
            String reason = switch (code) {
                case UNAVAILABLE -> "unavailable";
                case DEADLINE_EXCEEDED -> "deadline_exceeded";
                case RESOURCE_EXHAUSTED -> "overloaded";
                case INVALID_ARGUMENT, FAILED_PRECONDITION -> "refused";
                default -> "error";
            };
            String detail = "reranker at " + link.target() + ": " + code + ": " + String.valueOf(e.getStatus().getDescription());
            if (link.failOnError()) {
                link.failed.increment();
                RestStatus status = switch (code) {
                    case INVALID_ARGUMENT, FAILED_PRECONDITION -> RestStatus.BAD_REQUEST;
                    case DEADLINE_EXCEEDED -> RestStatus.GATEWAY_TIMEOUT;
                    default -> RestStatus.BAD_GATEWAY;
                };
                throw new ElasticsearchStatusException("[shopsearch] " + detail.replace('\n', ' '), status);
            }
            return fallback(topDocs, ctx, reader, window, link, reason, detail);
        } catch (RuntimeException e) {
            return fallback(topDocs, ctx, reader, window, link, "plugin_error", e.toString());
        }
        return apply(topDocs, window, response, ctx, reader, link);
    }

    /** Reads `_id` (and `_source` when asked) of one document, and stops once it has them. */
    private static final class IdVisitor extends StoredFieldVisitor {
        private final boolean wantSource;
        BytesRef id;
        BytesRef source;

        IdVisitor(boolean wantSource) {
            this.wantSource = wantSource;
        }

        void reset() {
            id = null;
            source = null;
        }

        @Override
        public Status needsField(FieldInfo field) {
            if (id != null && (wantSource == false || source != null)) return Status.STOP;
            if (ID_FIELD.equals(field.name)) return Status.YES;
            return wantSource && SOURCE_FIELD.equals(field.name) ? Status.YES : Status.NO;
        }

        @Override
        public void binaryField(FieldInfo field, byte[] value) {
            if (ID_FIELD.equals(field.name)) id = new BytesRef(value);
            else source = new BytesRef(value);
        }
    }

    private RerankRequest buildRequest(ScoreDoc[] docs, int window, IndexSearcher searcher, Context ctx, RerankerLink link)
        throws IOException {
        StoredFields stored = searcher.storedFields();
        String textField = link.textField();
        int maxChars = link.maxTextChars();
        // Stored fields are compressed in blocks of neighbouring documents: read them in doc id
        // order, so each block is decompressed once rather than once per hit in BM25 order.
        Integer[] byDoc = new Integer[window];
        for (int i = 0; i < window; i++) byDoc[i] = i;
        Arrays.sort(byDoc, (a, b) -> Integer.compare(docs[a].doc, docs[b].doc));
        String[] ids = new String[window];
        String[] texts = ctx.sendText ? new String[window] : null;
        IdVisitor visitor = new IdVisitor(ctx.sendText);
        for (int i : byDoc) {
            visitor.reset();
            stored.document(docs[i].doc, visitor);
            if (visitor.id == null) throw new IllegalStateException("hit without an _id (doc " + docs[i].doc + ")");
            ids[i] = Uid.decodeId(visitor.id.bytes, visitor.id.offset, visitor.id.length);
            if (texts != null && visitor.source != null) {
                Object text = XContentHelper.convertToMap(new BytesArray(visitor.source), false).v2().get(textField);
                if (text instanceof String s && s.isEmpty() == false) {
                    texts[i] = s.length() > maxChars ? s.substring(0, maxChars) : s;
                }
            }
        }
        RerankRequest.Builder request = RerankRequest.newBuilder().setQuery(ctx.queryText);
        if (ctx.modelVersion != null) request.setModelVersion(ctx.modelVersion);
        for (int i = 0; i < window; i++) {
            Candidate.Builder c = request.addCandidatesBuilder()
                .setItemId(ids[i])
                .setBm25Score(docs[i].score)
                .setBm25Rank(i + 1);
            if (texts != null && texts[i] != null) c.setText(texts[i]);
        }
        return request.build();
    }

    private TopDocs apply(TopDocs topDocs, int window, RerankResponse response, Context ctx, Object reader,
                                 RerankerLink link) {
        ScoreDoc[] docs = topDocs.scoreDocs;
        ScoreDoc[] out = new ScoreDoc[docs.length];
        boolean[] placed = new boolean[window];
        Set<Integer> rescored = new HashSet<>();
        Map<Key, Outcome> seen = new HashMap<>();
        int n = 0;
        for (Item item : response.getItemsList()) {
            int pos = (int) item.getBm25Rank() - 1;  // the service echoes the rank we sent: our window position
            if (item.getReranked() == false || pos < 0 || pos >= window || placed[pos]) continue;
            placed[pos] = true;
            ScoreDoc d = docs[pos];
            out[n++] = new ScoreDoc(d.doc, reranked(item.getScore()), d.shardIndex);
            rescored.add(d.doc);
            seen.put(new Key(reader, ctx.queryText, d.doc),
                new Outcome(true, item.getScore(), d.score, pos + 1, n, window, response.getModelVersion(), null));
        }
        List<ScoreDoc> rest = new ArrayList<>();
        for (int i = 0; i < docs.length; i++) {
            if (i < window && placed[i]) continue;
            ScoreDoc d = docs[i];
            rest.add(d);
            String why = i < window ? "the model could not score it (" + response.getStatusReason() + ")" : "past the window of " + window;
            seen.put(new Key(reader, ctx.queryText, d.doc), new Outcome(false, 0f, d.score, i + 1, 0, window,
                response.getModelVersion(), why));
        }
        rest.sort((a, b) -> a.score != b.score ? Float.compare(b.score, a.score) : Integer.compare(a.doc, b.doc));
        for (ScoreDoc d : rest) {
            out[n++] = new ScoreDoc(d.doc, notReranked(d.score), d.shardIndex);
        }
        if (response.getStatus() == shopsearch.reranker.v1.RerankerOuterClass.Status.PARTIAL) link.partial.increment();
        link.reranked.increment();
        ctx.setRescoredDocs(rescored);
        remember(seen);
        return new TopDocs(topDocs.totalHits, out);
    }

    private TopDocs fallback(TopDocs topDocs, Context ctx, Object reader, int window, RerankerLink link, String reason,
                             String detail) {
        if (link != null) link.fallback(reason, detail);
        ScoreDoc[] docs = topDocs.scoreDocs;
        ScoreDoc[] out = new ScoreDoc[docs.length];
        Map<Key, Outcome> seen = new HashMap<>();
        for (int i = 0; i < docs.length; i++) {
            out[i] = new ScoreDoc(docs[i].doc, notReranked(docs[i].score), docs[i].shardIndex);
            seen.put(new Key(reader, ctx.queryText, docs[i].doc),
                new Outcome(false, 0f, docs[i].score, i + 1, 0, window, "", "the reranker call failed (" + reason + ")"));
        }
        Arrays.sort(out, (a, b) -> a.score != b.score ? Float.compare(b.score, a.score) : Integer.compare(a.doc, b.doc));
        ctx.setRescoredDocs(Set.of());
        remember(seen);
        return new TopDocs(topDocs.totalHits, out);
    }

    private static void remember(Map<Key, Outcome> seen) {
        synchronized (outcomes) {
            outcomes.putAll(seen);
        }
    }

    @Override
    public Explanation explain(int topLevelDocId, IndexSearcher searcher, RescoreContext rescoreContext,
                               Explanation sourceExplanation) throws IOException {
        Context ctx = (Context) rescoreContext;
        Outcome o;
        synchronized (outcomes) {
            o = outcomes.get(new Key(readerKey(searcher), ctx.queryText, topLevelDocId));
        }
        Explanation first = sourceExplanation == null ? Explanation.noMatch("no first-pass explanation") : sourceExplanation;
        float bm25 = sourceExplanation == null ? 0f : sourceExplanation.getValue().floatValue();
        if (o == null) {
            return Explanation.match(notReranked(bm25),
                "shopsearch: no outcome kept for this hit (explained long after its search); shown as BM25 order", first);
        }
        if (o.reranked()) {
            return Explanation.match(reranked(o.modelScore()),
                "shopsearch: reranked by the model, final score = r(model score) places it above every hit not reranked",
                Explanation.match(o.modelScore(), "model score from the reranker service (model " + o.model() + "), rank "
                    + o.rank() + " in this shard's window of " + o.window()),
                Explanation.match(o.bm25(), "BM25 score sent to the model, BM25 rank " + o.bm25Rank() + " on this shard", first));
        }
        return Explanation.match(notReranked(o.bm25()),
            "shopsearch: not reranked (" + o.reason() + "); final score = t(BM25) keeps BM25 order below the reranked hits",
            Explanation.match(o.bm25(), "BM25 score, rank " + o.bm25Rank() + " on this shard", first));
    }
}
