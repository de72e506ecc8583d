package org.shopsearch.es;

/**
 * What the rescorer did with one hit on its shard: the data behind explain's sentences and the
 * `shopsearch_outcome` fetch sub-phase's per-hit entry.
 *
 * @param reranked   the model placed it (it sits above every hit not reranked)
 * @param modelScore the model's score; NaN when not reranked
 * @param bm25       its first-stage (BM25) score on this shard
 * @param bm25Rank   its rank in this shard's first-stage order, from 1
 * @param rank       its rank in the model's order of this shard's window, from 1; 0 when not reranked
 * @param window     the number of hits this shard sent to the model
 * @param model      the model version that answered; "" when the call failed
 * @param reason     why it was not reranked (a fixed key: {@link #UNSCORED}, {@link #PAST_WINDOW}, or the
 *                   call's fallback reason); null when reranked
 * @param detail     the service's own words when it could not score the hit; "" otherwise
 */
record Outcome(boolean reranked, float modelScore, float bm25, int bm25Rank, int rank, int window, String model,
               String reason, String detail) {
    /** In the window, but the service could not score it (an item it does not know, no text). */
    static final String UNSCORED = "unscored";
    /** Below this shard's window: never sent to the model. */
    static final String PAST_WINDOW = "past_window";

    static Outcome reranked(float modelScore, float bm25, int bm25Rank, int rank, int window, String model) {
        return new Outcome(true, modelScore, bm25, bm25Rank, rank, window, model, null, "");
    }

    static Outcome notReranked(float bm25, int bm25Rank, int window, String model, String reason, String detail) {
        return new Outcome(false, Float.NaN, bm25, bm25Rank, 0, window, model, reason, detail);
    }

    /** The reason as explain's sentence says it. */
    String describe() {
        if (reason == null) return "reranked";
        return switch (reason) {
            case UNSCORED -> "the model could not score it (" + detail + ")";
            case PAST_WINDOW -> "past the window of " + window;
            default -> "the reranker call failed (" + reason + ")";
        };
    }
}
