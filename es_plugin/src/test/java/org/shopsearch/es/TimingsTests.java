package org.shopsearch.es;

import org.junit.Test;

import shopsearch.reranker.v1.RerankerOuterClass.RerankResponse;

import java.util.Map;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;

/** The rescorer's spans as _shopsearch/stats reports them, and the call split by the service's own timing. */
public class TimingsTests {
    private static final long MS = 1_000_000L;

    @Test
    public void aSpanReportsCountMeanAndNearestRankPercentilesInMs() {
        Timings timings = new Timings();
        for (int ms = 1; ms <= 100; ms++) timings.add(Timings.CALL, ms * MS);
        Map<String, Object> call = timings.summary().get(Timings.CALL);
        assertEquals(100L, call.get("count"));
        assertEquals(50.5, (double) call.get("mean_ms"), 1e-9);
        assertEquals(50.0, (double) call.get("p50_ms"), 1e-9);
        assertEquals(95.0, (double) call.get("p95_ms"), 1e-9);
        assertEquals(1.0, (double) call.get("min_ms"), 1e-9);
        assertEquals(0L, timings.summary().get(Timings.MAP).get("count"));
        assertEquals(0.0, (double) timings.summary().get(Timings.MAP).get("p50_ms"), 0.0);
    }

    @Test
    public void percentilesFollowTheLatestSamplesOnly() {
        Timings timings = new Timings();
        for (int i = 0; i < Timings.RECENT; i++) timings.add(Timings.MAP, 1000 * MS);
        for (int i = 0; i < Timings.RECENT; i++) timings.add(Timings.MAP, 2 * MS);
        Map<String, Object> map = timings.summary().get(Timings.MAP);
        assertEquals(2L * Timings.RECENT, map.get("count"));
        assertEquals(2.0, (double) map.get("p95_ms"), 1e-9);
    }

    @Test
    public void resetForgetsEverySample() {
        Timings timings = new Timings();
        timings.add(Timings.RESCORE, 900 * MS);
        timings.reset();
        timings.add(Timings.RESCORE, 3 * MS);
        Map<String, Object> rescore = timings.summary().get(Timings.RESCORE);
        assertEquals(1L, rescore.get("count"));
        assertEquals(3.0, (double) rescore.get("p95_ms"), 1e-9);
        assertEquals(3.0, (double) rescore.get("mean_ms"), 1e-9);
    }

    @Test
    public void everySpanIsReportedInItsDocumentedOrderAndNoOther() {
        assertArrayEquals(Timings.SPANS, new Timings().summary().keySet().toArray(new String[0]));
        assertThrows(IllegalArgumentException.class, () -> new Timings().add("elsewhere", 1));
    }

    @Test
    public void theCallIsSplitIntoTheServicesOwnTimeAndTransport() {
        Timings timings = new Timings();
        RerankResponse answer = RerankResponse.newBuilder().putTimingsMs("server", 1.5).putTimingsMs("model", 1.0).build();
        ShopsearchRescorer.recordCall(timings, 4 * MS, answer);
        Map<String, Map<String, Object>> s = timings.summary();
        assertEquals(4.0, (double) s.get(Timings.CALL).get("p50_ms"), 1e-9);
        assertEquals(1.5, (double) s.get(Timings.SERVICE).get("p50_ms"), 1e-9);
        assertEquals(1.0, (double) s.get(Timings.MODEL).get("p50_ms"), 1e-9);
        assertEquals(2.5, (double) s.get(Timings.TRANSPORT).get("p50_ms"), 1e-9);
    }

    @Test
    public void aServiceThatDoesNotTimeItselfLeavesOnlyTheCall() {
        Timings timings = new Timings();
        ShopsearchRescorer.recordCall(timings, 4 * MS, RerankResponse.getDefaultInstance());
        assertEquals(1L, timings.summary().get(Timings.CALL).get("count"));
        assertEquals(0L, timings.summary().get(Timings.SERVICE).get("count"));
        assertEquals(0L, timings.summary().get(Timings.TRANSPORT).get("count"));
    }
}
