package org.shopsearch.es;

import org.apache.lucene.search.ScoreDoc;
import org.junit.Test;

import shopsearch.reranker.v1.RerankerOuterClass.Item;
import shopsearch.reranker.v1.RerankerOuterClass.RerankResponse;

import java.util.Arrays;
import java.util.Set;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

/** The score maps that let shards merge right: reranked hits above all others, each group in its own order. */
public class ScoreMapTests {
    private static final float[] VALUES = {-1e30f, -1e6f, -50f, -3.5f, -1f, -0.25f, -1e-6f, 0f, 1e-6f, 0.25f, 1f, 3.5f, 50f, 1e6f, 1e30f};

    @Test
    public void everyRerankedScoreIsAboveEveryOtherHit() {
        for (float model : VALUES) {
            for (float bm25 : VALUES) {
                float r = ShopsearchRescorer.reranked(model);
                float t = ShopsearchRescorer.notReranked(bm25);
                assertTrue(model + " vs " + bm25, r > 0 && t < 0 && t >= -2 && r > t);
            }
        }
    }

    @Test
    public void bothMapsKeepOrder() {
        for (int i = 1; i < VALUES.length; i++) {
            float lo = VALUES[i - 1], hi = VALUES[i];
            assertTrue("reranked " + lo + " < " + hi, ShopsearchRescorer.reranked(lo) <= ShopsearchRescorer.reranked(hi));
            assertTrue("notReranked " + lo + " < " + hi, ShopsearchRescorer.notReranked(lo) <= ShopsearchRescorer.notReranked(hi));
        }
        // strictly where float resolution allows: the ranges the model and BM25 actually give
        for (float x = -20f; x < 20f; x += 0.125f) {
            assertTrue(ShopsearchRescorer.reranked(x) < ShopsearchRescorer.reranked(x + 0.125f));
            assertTrue(ShopsearchRescorer.notReranked(x) < ShopsearchRescorer.notReranked(x + 0.125f));
        }
    }

    private static ScoreDoc[] bm25(float... scores) {
        ScoreDoc[] docs = new ScoreDoc[scores.length];
        for (int i = 0; i < scores.length; i++) docs[i] = new ScoreDoc(100 + i, scores[i], 0);  // doc 100+i at BM25 rank i+1
        return docs;
    }

    private static Item item(int bm25Rank, float score) {
        return Item.newBuilder().setBm25Rank(bm25Rank).setScore(score).setReranked(true).build();
    }

    private static int[] docs(ShopsearchRescorer.Reordered r) {
        return Arrays.stream(r.docs()).mapToInt(d -> d.doc).toArray();
    }

    @Test
    public void theModelsOrderComesFirstThenTheRestInBm25Order() {
        ScoreDoc[] in = bm25(9f, 8f, 7f, 6f, 5f, 4f);
        RerankResponse response = RerankResponse.newBuilder().setModelVersion("v7").setStatusReason("1 unknown item")
            .addItems(item(3, 0.9f)).addItems(item(4, 0.1f)).addItems(item(1, -0.5f))  // the service's order
            .addItems(Item.newBuilder().setBm25Rank(2).setReranked(false).build())
            .build();
        ShopsearchRescorer.Reordered r = ShopsearchRescorer.reorder(in, 4, response);
        assertArrayEquals(new int[] {102, 103, 100, 101, 104, 105}, docs(r));
        assertArrayEquals("the docs are returned in score order", docs(r), sortedByScore(r));
        assertEquals(Set.of(100, 102, 103), r.rescored());

        Outcome first = r.outcomes().get(102);
        assertTrue(first.reranked());
        assertEquals(0.9f, first.modelScore(), 0f);
        assertEquals(7f, first.bm25(), 0f);
        assertEquals(3, first.bm25Rank());
        assertEquals(1, first.rank());
        assertEquals("v7", first.model());
        assertEquals(Outcome.UNSCORED, r.outcomes().get(101).reason());
        assertEquals("the model could not score it (1 unknown item)", r.outcomes().get(101).describe());
        assertEquals(Outcome.PAST_WINDOW, r.outcomes().get(105).reason());
        assertEquals("past the window of 4", r.outcomes().get(105).describe());
        assertTrue(Float.isNaN(r.outcomes().get(105).modelScore()));
    }

    @Test
    public void anItemOutsideTheWindowOrRepeatedIsIgnored() {
        RerankResponse response = RerankResponse.newBuilder()
            .addItems(item(2, 1f)).addItems(item(2, 5f)).addItems(item(9, 3f)).addItems(item(0, 3f)).build();
        ShopsearchRescorer.Reordered r = ShopsearchRescorer.reorder(bm25(3f, 2f, 1f), 3, response);
        assertArrayEquals(new int[] {101, 100, 102}, docs(r));
        assertEquals(ShopsearchRescorer.reranked(1f), r.docs()[0].score, 0f);  // the first answer for a position counts
        assertEquals(Set.of(101), r.rescored());
    }

    @Test
    public void aFallbackKeepsBm25OrderBelowZero() {
        ShopsearchRescorer.Reordered r = ShopsearchRescorer.bm25Order(bm25(3f, 2f, 2f, -1f), 2, "unavailable");
        assertArrayEquals(new int[] {100, 101, 102, 103}, docs(r));
        assertTrue(Arrays.stream(r.docs()).allMatch(d -> d.score < 0));
        assertTrue(r.rescored().isEmpty());
        Outcome o = r.outcomes().get(101);
        assertFalse(o.reranked());
        assertEquals("unavailable", o.reason());
        assertEquals("the reranker call failed (unavailable)", o.describe());
        assertEquals(2, o.bm25Rank());
    }

    private static int[] sortedByScore(ShopsearchRescorer.Reordered r) {
        ScoreDoc[] copy = r.docs().clone();
        Arrays.sort(copy, (a, b) -> Float.compare(b.score, a.score));
        return Arrays.stream(copy).mapToInt(d -> d.doc).toArray();
    }
}
