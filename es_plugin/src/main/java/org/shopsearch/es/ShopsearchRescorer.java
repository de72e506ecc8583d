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
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Supplier;

/**
 * Reranks one shard's BM25 window through the reranker service.
 *
 * Scores, so that shards merge right: a hit the model scored gets r(s) > 0 (s its model score,
 * r monotone: 1 + s for s >= 0, 1 / (1 - s) below); every other hit (past the window, one the
 * model could not score, or all of them when the call failed) gets t(bm25) < 0 (monotone in its
 * BM25 score). So on every shard and after the merge, reranked hits come first in the model's
 * order, then the rest in BM25 order. Explain reports the model's own score.
 *
 * One per plugin: it holds the plugin's link supplier and the per-hit outcomes of recent searches
 * (read by explain and by the `shopsearch_outcome` fetch sub-phase, later phases of the same search).
 */
public final class ShopsearchRescorer implements Rescorer {
    private static final String ID_FIELD = "_id";
    private static final String SOURCE_FIELD = "_source";

    private final Supplier<RerankerLink> links;
    private final Outcomes outcomes;

    ShopsearchRescorer(Supplier<RerankerLink> links) {
        this(links, new Outcomes(Outcomes.KEPT));
    }

    ShopsearchRescorer(Supplier<RerankerLink> links, Outcomes outcomes) {
        this.links = links;
        this.outcomes = outcomes;
    }

    RerankerLink link() {
        return links.get();
    }

    Outcomes outcomes() {
        return outcomes;
    }

    static final class Context extends RescoreContext {
        final String queryText;
        final boolean sendText;
        final String modelVersion;

        Context(int windowSize, ShopsearchRescorer rescorer, String queryText, boolean sendText, String modelVersion) {
            super(windowSize, rescorer);
            this.queryText = queryText;
            this.sendText = sendText;
            this.modelVersion = modelVersion;
        }
    }

    /** A hit the model scored: (0, inf), increasing in the model score s. */
    static float reranked(float s) {
        return s >= 0 ? 1f + s : 1f / (1f - s);
    }

    /** Any other hit: (-2, 0), increasing in its BM25 score, so always below every reranked hit. */
    static float notReranked(float bm25) {
        return bm25 >= 0 ? -1f / (1f + bm25) : -2f + 1f / (1f - bm25);
    }

    /** The fallback reason (stats, outcome, log) for a failed call's gRPC status. */
    static String fallbackReason(Status.Code code) {
        return switch (code) {
            case UNAVAILABLE -> "unavailable";
            case DEADLINE_EXCEEDED -> "deadline_exceeded";
            case RESOURCE_EXHAUSTED -> "overloaded";
            case INVALID_ARGUMENT, FAILED_PRECONDITION -> "refused";
            default -> "error";
        };
    }

    /** The HTTP status of the shard failure a failed call becomes under fail_on_error. */
    static RestStatus failureStatus(Status.Code code) {
        return switch (code) {
            case INVALID_ARGUMENT, FAILED_PRECONDITION -> RestStatus.BAD_REQUEST;
            case DEADLINE_EXCEEDED -> RestStatus.GATEWAY_TIMEOUT;
            default -> RestStatus.BAD_GATEWAY;
        };
    }

    static Object readerKey(IndexSearcher searcher) {
        IndexReader reader = searcher.getIndexReader();
        IndexReader.CacheHelper helper = reader.getReaderCacheHelper();
        return helper != null ? helper.getKey() : reader;
    }

    @Override
    public TopDocs rescore(TopDocs topDocs, IndexSearcher searcher, RescoreContext rescoreContext) throws IOException {
        if (topDocs == null || topDocs.scoreDocs.length == 0) return topDocs;
        long began = System.nanoTime();
        RerankerLink link = links.get();
        try {
            return rescore(topDocs, searcher, (Context) rescoreContext, link, began);
        } finally {
            if (link != null) link.timings.add(Timings.RESCORE, System.nanoTime() - began);
        }
    }

    private TopDocs rescore(TopDocs topDocs, IndexSearcher searcher, Context ctx, RerankerLink link, long began)
        throws IOException {
        ScoreDoc[] docs = topDocs.scoreDocs;
        int window = Math.min(ctx.getWindowSize(), docs.length);
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
        long read = System.nanoTime();
        link.timings.add(Timings.READ_WINDOW, read - began);
        ctx.checkCancellation();
        RerankResponse response;
        try {
            response = link.rerank(request);
        } catch (StatusRuntimeException e) {
            Status.Code code = e.getStatus().getCode();
            String detail = "reranker at " + link.target() + ": " + code + ": " + String.valueOf(e.getStatus().getDescription());
            if (link.failOnError()) {
                link.failed.increment();
                throw new ElasticsearchStatusException("[shopsearch] " + detail.replace('\n', ' '), failureStatus(code));
            }
            return fallback(topDocs, ctx, reader, window, link, fallbackReason(code), detail);
        } catch (RuntimeException e) {
            return fallback(topDocs, ctx, reader, window, link, "plugin_error", e.toString());
        }
        long answered = System.nanoTime();
        recordCall(link.timings, answered - read, response);
        Reordered result = reorder(docs, window, response);
        if (response.getStatus() == shopsearch.reranker.v1.RerankerOuterClass.Status.PARTIAL) link.partial.increment();
        link.reranked.increment();
        ctx.setRescoredDocs(result.rescored());
        outcomes.put(reader, ctx.queryText, result.outcomes());
        link.timings.add(Timings.MAP, System.nanoTime() - answered);
        return new TopDocs(topDocs.totalHits, result.docs());
    }

    /** The call's spans: as the node saw it, the service's own (from its timings_ms), and the rest, transport. */
    static void recordCall(Timings timings, long callNanos, RerankResponse response) {
        timings.add(Timings.CALL, callNanos);
        Double server = response.getTimingsMsMap().get("server");
        if (server == null) return;  // a service that does not time itself: no split
        long serviceNanos = (long) (server * 1e6);
        timings.add(Timings.SERVICE, serviceNanos);
        Double model = response.getTimingsMsMap().get("model");
        if (model != null) timings.add(Timings.MODEL, (long) (model * 1e6));
        timings.add(Timings.TRANSPORT, callNanos - serviceNanos);
    }

    /** Reads `_id` (when its doc values gave none) and `_source` (when asked) of one document, and
     *  stops once it has them. */
    private static final class IdVisitor extends StoredFieldVisitor {
        private final boolean wantSource;
        private boolean wantId;
        BytesRef id;
        BytesRef source;

        IdVisitor(boolean wantSource) {
            this.wantSource = wantSource;
        }

        void reset(boolean wantId) {
            this.wantId = wantId;
            id = null;
            source = null;
        }

        @Override
        public Status needsField(FieldInfo field) {
            if ((wantId == false || id != null) && (wantSource == false || source != null)) return Status.STOP;
            if (wantId && ID_FIELD.equals(field.name)) return Status.YES;
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
        // (doc id, window position) packed in one long: a primitive sort, no boxing
        long[] byDoc = new long[window];
        for (int i = 0; i < window; i++) byDoc[i] = ((long) docs[i].doc << 32) | i;
        Arrays.sort(byDoc);
        String[] ids = WindowIds.read(searcher, docs, byDoc, link.idField());
        String[] texts = ctx.sendText ? new String[window] : null;
        IdVisitor visitor = new IdVisitor(ctx.sendText);
        for (long packed : byDoc) {
            int i = (int) packed;
            boolean needId = ids[i] == null;
            if (needId == false && texts == null) continue;  // the usual case: no stored field read at all
            visitor.reset(needId);
            stored.document(docs[i].doc, visitor);
            if (needId) {
                if (visitor.id == null) throw new IllegalStateException("hit without an _id (doc " + docs[i].doc + ")");
                ids[i] = Uid.decodeId(visitor.id.bytes, visitor.id.offset, visitor.id.length);
            }
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

    /** The shard's new order and each hit's outcome (keyed by Lucene doc id). */
    record Reordered(ScoreDoc[] docs, Set<Integer> rescored, Map<Integer, Outcome> outcomes) {}

    /**
     * The service's answer applied to the window: the hits it reranked first, in its order, scored
     * r(model score); every other hit after them in BM25 order, scored t(BM25).
     */
    static Reordered reorder(ScoreDoc[] docs, int window, RerankResponse response) {
        ScoreDoc[] out = new ScoreDoc[docs.length];
        boolean[] placed = new boolean[window];
        Set<Integer> rescored = new HashSet<>();
        Map<Integer, Outcome> seen = new HashMap<>();
        String model = response.getModelVersion();
        int n = 0;
        for (Item item : response.getItemsList()) {
            int pos = (int) item.getBm25Rank() - 1;  // the service echoes the rank we sent: our window position
            if (item.getReranked() == false || pos < 0 || pos >= window || placed[pos]) continue;
            placed[pos] = true;
            ScoreDoc d = docs[pos];
            out[n++] = new ScoreDoc(d.doc, reranked(item.getScore()), d.shardIndex);
            rescored.add(d.doc);
            seen.put(d.doc, Outcome.reranked(item.getScore(), d.score, pos + 1, n, window, model));
        }
        List<ScoreDoc> rest = new ArrayList<>();
        for (int i = 0; i < docs.length; i++) {
            if (i < window && placed[i]) continue;
            ScoreDoc d = docs[i];
            rest.add(d);
            seen.put(d.doc, i < window ? Outcome.notReranked(d.score, i + 1, window, model, Outcome.UNSCORED, response.getStatusReason())
                : Outcome.notReranked(d.score, i + 1, window, model, Outcome.PAST_WINDOW, ""));
        }
        rest.sort((a, b) -> a.score != b.score ? Float.compare(b.score, a.score) : Integer.compare(a.doc, b.doc));
        for (ScoreDoc d : rest) {
            out[n++] = new ScoreDoc(d.doc, notReranked(d.score), d.shardIndex);
        }
        return new Reordered(out, rescored, seen);
    }

    /** BM25 order for every hit, after a failed call; `reason` is the fallback reason. */
    static Reordered bm25Order(ScoreDoc[] docs, int window, String reason) {
        ScoreDoc[] out = new ScoreDoc[docs.length];
        Map<Integer, Outcome> seen = new HashMap<>();
        for (int i = 0; i < docs.length; i++) {
            out[i] = new ScoreDoc(docs[i].doc, notReranked(docs[i].score), docs[i].shardIndex);
            seen.put(docs[i].doc, Outcome.notReranked(docs[i].score, i + 1, window, "", reason, ""));
        }
        Arrays.sort(out, (a, b) -> a.score != b.score ? Float.compare(b.score, a.score) : Integer.compare(a.doc, b.doc));
        return new Reordered(out, Set.of(), seen);
    }

    private TopDocs fallback(TopDocs topDocs, Context ctx, Object reader, int window, RerankerLink link, String reason,
                             String detail) {
        if (link != null) link.fallback(reason, detail);
        Reordered result = bm25Order(topDocs.scoreDocs, window, reason);
        ctx.setRescoredDocs(result.rescored());
        outcomes.put(reader, ctx.queryText, result.outcomes());
        return new TopDocs(topDocs.totalHits, result.docs());
    }

    @Override
    public Explanation explain(int topLevelDocId, IndexSearcher searcher, RescoreContext rescoreContext,
                               Explanation sourceExplanation) throws IOException {
        Context ctx = (Context) rescoreContext;
        Outcome o = outcomes.get(readerKey(searcher), ctx.queryText, topLevelDocId);
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
            "shopsearch: not reranked (" + o.describe() + "); final score = t(BM25) keeps BM25 order below the reranked hits",
            Explanation.match(o.bm25(), "BM25 score, rank " + o.bm25Rank() + " on this shard", first));
    }
}
