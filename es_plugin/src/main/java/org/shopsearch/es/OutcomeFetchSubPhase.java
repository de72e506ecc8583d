package org.shopsearch.es;

import org.apache.lucene.index.LeafReaderContext;
import org.elasticsearch.common.document.DocumentField;
import org.elasticsearch.search.fetch.FetchContext;
import org.elasticsearch.search.fetch.FetchSubPhase;
import org.elasticsearch.search.fetch.FetchSubPhaseProcessor;
import org.elasticsearch.search.fetch.StoredFieldsSpec;
import org.elasticsearch.search.rescore.RescoreContext;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * With {@code "ext": {"shopsearch_outcome": {}}} on a search with the shopsearch rescore clause, each
 * hit gets {@code fields._shopsearch}: one object saying what the rescorer did with it, as data (the
 * page reads this; explain's sentences are for people). Keys:
 * <ul>
 *   <li>{@code reranked} (boolean): the model placed it;</li>
 *   <li>{@code model_score} (float or null), {@code model_rank} (its rank in its shard's reranked window, or null);</li>
 *   <li>{@code bm25_score}, {@code bm25_rank} (its first-stage score and rank on its shard), {@code window};</li>
 *   <li>{@code model_version} ("" when the call failed);</li>
 *   <li>{@code reason} (null when reranked; else {@code unscored}, {@code past_window}, or the call's fallback
 *       reason: {@code unavailable}, {@code deadline_exceeded}, {@code overloaded}, {@code refused}, {@code error},
 *       {@code plugin_error}, {@code not_ready}; {@code not_kept} when no outcome was kept) and {@code detail}.</li>
 * </ul>
 */
final class OutcomeFetchSubPhase implements FetchSubPhase {
    static final String FIELD = "_shopsearch";
    static final String NOT_KEPT = "not_kept";

    private final ShopsearchRescorer rescorer;

    OutcomeFetchSubPhase(ShopsearchRescorer rescorer) {
        this.rescorer = rescorer;
    }

    @Override
    public FetchSubPhaseProcessor getProcessor(FetchContext context) {
        if (context.getSearchExt(OutcomeSearchExt.NAME) == null) return null;
        ShopsearchRescorer.Context ours = null;
        for (RescoreContext rescore : context.rescore()) {
            if (rescore instanceof ShopsearchRescorer.Context c) ours = c;
        }
        if (ours == null) return null;  // no shopsearch rescore in this search: nothing to report
        // this shard's outcomes, looked up once for all its hits
        Map<Integer, Outcome> byDoc = rescorer.outcomes().rescore(ShopsearchRescorer.readerKey(context.searcher()), ours.queryText);
        RerankerLink link = rescorer.link();  // times each hit's step (null before the plugin started)
        return new FetchSubPhaseProcessor() {
            @Override
            public void setNextReader(LeafReaderContext readerContext) {}

            @Override
            public void process(HitContext hit) {
                long began = System.nanoTime();
                Outcome o = byDoc == null ? null : byDoc.get(hit.hit().docId());
                hit.hit().setDocumentField(FIELD, new DocumentField(FIELD, List.of(asMap(o))));
                if (link != null) link.timings.add(Timings.FETCH_HIT, System.nanoTime() - began);
            }

            @Override
            public StoredFieldsSpec storedFieldsSpec() {
                return StoredFieldsSpec.NO_REQUIREMENTS;
            }
        };
    }

    /** The per-hit entry (see the class comment); a missing outcome is reported, never guessed. */
    static Map<String, Object> asMap(Outcome o) {
        Map<String, Object> out = new LinkedHashMap<>();
        if (o == null) {
            out.put("reranked", false);
            out.put("reason", NOT_KEPT);
            return out;
        }
        out.put("reranked", o.reranked());
        out.put("model_score", o.reranked() ? o.modelScore() : null);
        out.put("model_rank", o.reranked() ? o.rank() : null);
        out.put("bm25_score", o.bm25());
        out.put("bm25_rank", o.bm25Rank());
        out.put("window", o.window());
        out.put("model_version", o.model());
        out.put("reason", o.reason());
        out.put("detail", o.detail());
        return out;
    }
}
