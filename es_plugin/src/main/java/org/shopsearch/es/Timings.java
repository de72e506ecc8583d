package org.shopsearch.es;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.LongAdder;

/**
 * Where a rescore's time goes on this node: wall-clock spans of its steps, as {@code _shopsearch/stats}
 * reports them under {@code timings} (count, mean, min, p50, p95 of the latest {@link #RECENT} of each, ms).
 * Spans ({@link #SPANS}):
 * <ul>
 *   <li>{@code rescore}: all of one shard's rescore (the rest are parts of it, but {@code fetch_hit});</li>
 *   <li>{@code read_window}: the window's ids (and titles) read and the request built;</li>
 *   <li>{@code call}: the gRPC call as the node sees it; {@code service}: the service's own handler time
 *       (its {@code timings_ms.server}), {@code model}: its model's ({@code timings_ms.model});
 *       {@code transport}: call minus service (channel, serialisation, network, both sides' thread handoffs);</li>
 *   <li>{@code map}: the answer mapped to scores and outcomes kept;</li>
 *   <li>{@code fetch_hit}: the outcome fetch sub-phase, per hit.</li>
 * </ul>
 * Recording is a few atomic adds, cheap enough to stay on in production.
 */
final class Timings {
    static final int RECENT = 4096;
    static final String RESCORE = "rescore";
    static final String READ_WINDOW = "read_window";
    static final String CALL = "call";
    static final String SERVICE = "service";
    static final String MODEL = "model";
    static final String TRANSPORT = "transport";
    static final String MAP = "map";
    static final String FETCH_HIT = "fetch_hit";
    static final String[] SPANS = {RESCORE, READ_WINDOW, CALL, SERVICE, MODEL, TRANSPORT, MAP, FETCH_HIT};

    /** One span: every sample counted, the latest RECENT kept for percentiles. */
    static final class Span {
        private final LongAdder count = new LongAdder();
        private final LongAdder nanos = new LongAdder();
        private final AtomicLongArray recent = new AtomicLongArray(RECENT);
        private final AtomicLong next = new AtomicLong();

        void add(long elapsedNanos) {
            long ns = Math.max(0, elapsedNanos);
            count.increment();
            nanos.add(ns);
            recent.set((int) (next.getAndIncrement() % RECENT), ns);
        }

        /** count, mean_ms, min_ms, p50_ms, p95_ms (min and percentiles over the latest RECENT samples). */
        Map<String, Object> summary() {
            long n = count.sum();
            int kept = (int) Math.min(n, RECENT);
            long[] samples = new long[kept];
            for (int i = 0; i < kept; i++) samples[i] = recent.get(i);
            Arrays.sort(samples);
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("count", n);
            out.put("mean_ms", n == 0 ? 0.0 : nanos.sum() / 1e6 / n);
            // on a busy machine the minimum is the step's own cost; the percentiles add the waits
            out.put("min_ms", kept == 0 ? 0.0 : samples[0] / 1e6);
            out.put("p50_ms", percentile(samples, 0.50));
            out.put("p95_ms", percentile(samples, 0.95));
            return out;
        }

        void reset() {
            count.reset();
            nanos.reset();
            next.set(0);
        }
    }

    /** The nearest-rank percentile of sorted nanoseconds, in ms; 0 when there are none. */
    static double percentile(long[] sorted, double q) {
        if (sorted.length == 0) return 0.0;
        int rank = (int) Math.ceil(q * sorted.length);
        return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] / 1e6;
    }

    private final Map<String, Span> spans = new LinkedHashMap<>();

    Timings() {
        for (String name : SPANS) spans.put(name, new Span());
    }

    Span span(String name) {
        Span span = spans.get(name);
        if (span == null) throw new IllegalArgumentException("no timing span [" + name + "]");
        return span;
    }

    void add(String name, long elapsedNanos) {
        span(name).add(elapsedNanos);
    }

    /** Each span's summary, in SPANS order. */
    Map<String, Map<String, Object>> summary() {
        Map<String, Map<String, Object>> out = new LinkedHashMap<>();
        spans.forEach((name, span) -> out.put(name, span.summary()));
        return out;
    }

    /** Forgets every sample (a bench's run starts from here); the counters in stats are not touched. */
    void reset() {
        spans.values().forEach(Span::reset);
    }
}
