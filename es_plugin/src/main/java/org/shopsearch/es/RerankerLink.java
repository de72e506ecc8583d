package org.shopsearch.es;

import io.grpc.ConnectivityState;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;

import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;
import org.elasticsearch.common.settings.ClusterSettings;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.core.TimeValue;

import shopsearch.reranker.v1.RerankerGrpc;
import shopsearch.reranker.v1.RerankerOuterClass.RerankRequest;
import shopsearch.reranker.v1.RerankerOuterClass.RerankResponse;

import java.io.Closeable;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;

/**
 * The node's one channel to the reranker service, its settings and its counters.
 *
 * The channel is opened (and asked to connect) when the node starts, so the first search does not
 * pay the connection; it is rebuilt when the target changes or the channel shut down, and its
 * reconnect backoff is reset after a failure so a service that comes back is used at once.
 */
public final class RerankerLink implements Closeable {
    private static final Logger log = LogManager.getLogger(RerankerLink.class);
    private static final long LOG_EVERY_NANOS = TimeUnit.SECONDS.toNanos(10);
    static final String RERANKER_SERVICE = RerankerGrpc.SERVICE_NAME;

    private volatile String target;
    private volatile int retryAttempts;
    private volatile TimeValue retryBackoff;
    private volatile TimeValue deadline;
    private volatile boolean failOnError;
    private volatile int maxWindow;
    private volatile String textField;
    private volatile String idField;
    private volatile int maxTextChars;
    private volatile ManagedChannel channel;
    private volatile RerankerGrpc.RerankerBlockingStub stub;
    private volatile boolean warmed;  // one round trip made on this channel (classes loaded, connection up)

    final LongAdder calls = new LongAdder();
    final LongAdder reranked = new LongAdder();
    final LongAdder partial = new LongAdder();
    final LongAdder failed = new LongAdder();  // fail_on_error: the shard failed
    final LongAdder callMicros = new LongAdder();
    final Timings timings = new Timings();
    private final Map<String, LongAdder> fallbacks = new ConcurrentHashMap<>();
    private final Map<String, AtomicLong> lastLogged = new ConcurrentHashMap<>();
    private final Map<String, LongAdder> unlogged = new ConcurrentHashMap<>();
    private final ScheduledExecutorService watcher = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "shopsearch-rerank-channel-watch");
        t.setDaemon(true);
        return t;
    });

    RerankerLink(Settings settings, ClusterSettings clusterSettings) {
        this.deadline = RerankSettings.DEADLINE.get(settings);
        this.failOnError = RerankSettings.FAIL_ON_ERROR.get(settings);
        this.maxWindow = RerankSettings.MAX_WINDOW.get(settings);
        this.textField = RerankSettings.TEXT_FIELD.get(settings);
        this.idField = RerankSettings.ID_FIELD.get(settings);
        this.maxTextChars = RerankSettings.MAX_TEXT_CHARS.get(settings);
        this.retryAttempts = RerankSettings.RETRY_ATTEMPTS.get(settings);
        this.retryBackoff = RerankSettings.RETRY_BACKOFF.get(settings);
        setTarget(RerankSettings.TARGET.get(settings));
        clusterSettings.addSettingsUpdateConsumer(RerankSettings.TARGET, this::setTarget);
        clusterSettings.addSettingsUpdateConsumer(RerankSettings.RETRY_ATTEMPTS, v -> {
            retryAttempts = v;
            setTarget(target);  // the retry policy is the channel's: a new one
        });
        clusterSettings.addSettingsUpdateConsumer(RerankSettings.RETRY_BACKOFF, v -> {
            retryBackoff = v;
            setTarget(target);
        });
        clusterSettings.addSettingsUpdateConsumer(RerankSettings.DEADLINE, v -> deadline = v);
        clusterSettings.addSettingsUpdateConsumer(RerankSettings.FAIL_ON_ERROR, v -> failOnError = v);
        clusterSettings.addSettingsUpdateConsumer(RerankSettings.MAX_WINDOW, v -> maxWindow = v);
        clusterSettings.addSettingsUpdateConsumer(RerankSettings.TEXT_FIELD, v -> textField = v);
        clusterSettings.addSettingsUpdateConsumer(RerankSettings.ID_FIELD, v -> idField = v);
        clusterSettings.addSettingsUpdateConsumer(RerankSettings.MAX_TEXT_CHARS, v -> maxTextChars = v);
        // Calls fail fast while the channel is down (no search thread waits for a dead service);
        // this keeps it trying to reconnect every second, so a restarted service is used at once.
        watcher.scheduleWithFixedDelay(this::watch, 1, 1, TimeUnit.SECONDS);
    }

    private void watch() {
        try {
            if (warmed == false) warmUp();
            ManagedChannel ch = channel;
            ConnectivityState state = ch.getState(false);
            if (state == ConnectivityState.TRANSIENT_FAILURE) {
                ch.resetConnectBackoff();
            } else if (state == ConnectivityState.IDLE) {
                ch.getState(true);
            } else if (state == ConnectivityState.SHUTDOWN) {
                synchronized (this) {
                    if (channel == ch) setTarget(target);
                }
            }
        } catch (RuntimeException e) {
            log.debug("shopsearch channel watch", e);
        }
    }

    String target() { return target; }
    TimeValue deadline() { return deadline; }
    boolean failOnError() { return failOnError; }
    int maxWindow() { return maxWindow; }
    String textField() { return textField; }
    String idField() { return idField; }
    int maxTextChars() { return maxTextChars; }

    private synchronized void setTarget(String newTarget) {
        ManagedChannel old = channel;
        target = newTarget;
        channel = open(newTarget);
        stub = RerankerGrpc.newBlockingStub(channel);
        warmed = false;
        if (old != null) old.shutdown();
        log.info("shopsearch reranker channel to [{}] opened", newTarget);
    }

    private ManagedChannel open(String target) {
        // grpc finds its transports and load balancers through the context class loader, which on a
        // search thread is Elasticsearch's own: build with the plugin's loader in place.
        Thread thread = Thread.currentThread();
        ClassLoader previous = thread.getContextClassLoader();
        thread.setContextClassLoader(RerankerLink.class.getClassLoader());
        try {
            RerankTarget.register();
            ManagedChannel ch = NettyChannelBuilder.forTarget(RerankTarget.channelTarget(target))
                .usePlaintext()
                .maxInboundMessageSize(16 << 20)
                .defaultServiceConfig(serviceConfig(target, retryAttempts, retryBackoff))
                .disableServiceConfigLookUp()  // ours, never one from DNS TXT records
                .enableRetry()
                .build();
            ch.getState(true);  // connect now: the first search must not pay for it
            return ch;
        } finally {
            thread.setContextClassLoader(previous);
        }
    }

    /**
     * gRPC's own balancing, as the Python client sets it (reranker/client.py): round_robin over every
     * replica the target names, client-side health checks (grpc.health.v1, the Reranker service) so a
     * replica that is loading or draining leaves the rotation, and UNAVAILABLE retried on another
     * replica within the call's deadline. One host:port keeps round_robin and retries, without health checks.
     */
    static Map<String, Object> serviceConfig(String target, int retryAttempts, TimeValue retryBackoff) {
        Map<String, Object> config = new HashMap<>();
        config.put("loadBalancingConfig", List.of(Map.of("round_robin", Map.of())));
        if (RerankTarget.namesSeveral(target)) {
            config.put("healthCheckConfig", Map.of("serviceName", RERANKER_SERVICE));
        }
        if (retryAttempts > 1) {
            Map<String, Object> retry = Map.of(
                "maxAttempts", (double) retryAttempts, "initialBackoff", seconds(retryBackoff),
                "maxBackoff", seconds(TimeValue.timeValueMillis(10 * retryBackoff.millis())),
                "backoffMultiplier", 2.0, "retryableStatusCodes", List.of("UNAVAILABLE"));
            config.put("methodConfig", List.of(Map.of("name", List.of(Map.of("service", RERANKER_SERVICE)), "retryPolicy", retry)));
        }
        return config;
    }

    private static String seconds(TimeValue value) {
        return String.format(java.util.Locale.ROOT, "%.3fs", value.millis() / 1000.0);
    }

    /** A first round trip off the search path: the first call on a new channel costs about a second. */
    private void warmUp() {
        try {
            // no candidates: the service answers INVALID_ARGUMENT at once, which is all this needs
            stub.withDeadlineAfter(5, TimeUnit.SECONDS).rerank(RerankRequest.newBuilder().setQuery("warm-up").build());
            warmed = true;
        } catch (StatusRuntimeException e) {
            Status.Code code = e.getStatus().getCode();
            warmed = code != Status.Code.UNAVAILABLE && code != Status.Code.DEADLINE_EXCEEDED;
        }
        if (warmed) log.info("shopsearch reranker channel to [{}] warmed up", target);
    }

    boolean warmed() {
        return warmed;
    }

    /** One Rerank call under the node's deadline; StatusRuntimeException on any failure. */
    RerankResponse rerank(RerankRequest request) {
        ManagedChannel ch = channel;
        ConnectivityState state = ch.getState(false);
        if (state == ConnectivityState.SHUTDOWN) {
            synchronized (this) {
                if (channel == ch) setTarget(target);
            }
        }
        calls.increment();
        long began = System.nanoTime();
        try {
            RerankerGrpc.RerankerBlockingStub call = stub.withDeadlineAfter(deadline.millis(), TimeUnit.MILLISECONDS);
            // A connection being made (node start, service back) is worth waiting for, within the deadline.
            boolean waited = state == ConnectivityState.CONNECTING || state == ConnectivityState.IDLE;
            if (waited) call = call.withWaitForReady();
            try {
                return call.rerank(request);
            } catch (StatusRuntimeException e) {
                if (waited && e.getStatus().getCode() == Status.Code.DEADLINE_EXCEEDED
                    && channel.getState(false) != ConnectivityState.READY) {
                    // never connected: the service is not there, whatever the timer says
                    throw Status.UNAVAILABLE.withDescription("no connection within the deadline (" + state + ")").asRuntimeException();
                }
                throw e;
            }
        } catch (StatusRuntimeException e) {
            if (e.getStatus().getCode() == Status.Code.UNAVAILABLE) channel.resetConnectBackoff();
            throw e;
        } finally {
            callMicros.add((System.nanoTime() - began) / 1000);
        }
    }

    ConnectivityState channelState() {
        return channel.getState(false);
    }

    /** Counts a fallback to BM25 order and logs it at most once per reason every 10 s. */
    void fallback(String reason, String detail) {
        fallbacks.computeIfAbsent(reason, k -> new LongAdder()).increment();
        long now = System.nanoTime();
        AtomicLong last = lastLogged.computeIfAbsent(reason, k -> new AtomicLong(now - 2 * LOG_EVERY_NANOS));
        LongAdder skipped = unlogged.computeIfAbsent(reason, k -> new LongAdder());
        long previous = last.get();
        if (now - previous >= LOG_EVERY_NANOS && last.compareAndSet(previous, now)) {
            long more = skipped.sumThenReset();
            log.warn("shopsearch rescore fell back to BM25 order ({}): {}{}", reason, detail,
                more > 0 ? " (and " + more + " more since the last line)" : "");
        } else {
            skipped.increment();
        }
    }

    Map<String, Long> fallbackCounts() {
        Map<String, Long> out = new TreeMap<>();
        fallbacks.forEach((k, v) -> out.put(k, v.sum()));
        return out;
    }

    @Override
    public synchronized void close() {
        watcher.shutdownNow();
        if (channel != null) {
            channel.shutdownNow();
        }
    }
}
