package org.shopsearch.es;

import org.elasticsearch.client.internal.node.NodeClient;
import org.elasticsearch.rest.BaseRestHandler;
import org.elasticsearch.rest.RestRequest;
import org.elasticsearch.rest.RestResponse;
import org.elasticsearch.rest.RestStatus;
import org.elasticsearch.xcontent.XContentBuilder;

import java.util.List;
import java.util.function.Supplier;

import static org.elasticsearch.rest.RestRequest.Method.GET;
import static org.elasticsearch.rest.RestRequest.Method.POST;

/**
 * {@code GET _shopsearch/stats}: this node's reranker counters, since the node started, and where the
 * rescores' time went ({@code timings}, see {@link Timings}); {@code POST _shopsearch/stats/timings/_reset}
 * forgets the timing samples (not the counters) and answers the same.
 */
public final class RestStatsAction extends BaseRestHandler {
    static final String TIMINGS_RESET = "/_shopsearch/stats/timings/_reset";

    private final Supplier<String> nodeName;
    private final Supplier<RerankerLink> links;

    RestStatsAction(Supplier<String> nodeName, Supplier<RerankerLink> links) {
        this.nodeName = nodeName;
        this.links = links;
    }

    @Override
    public String getName() {
        return "shopsearch_stats";
    }

    @Override
    public List<Route> routes() {
        return List.of(new Route(GET, "/_shopsearch/stats"), new Route(POST, TIMINGS_RESET));
    }

    @Override
    protected RestChannelConsumer prepareRequest(RestRequest request, NodeClient client) {
        boolean reset = request.method() == POST;  // TIMINGS_RESET: a bench starts its run from no samples
        return channel -> {
            RerankerLink link = links.get();
            if (reset && link != null) link.timings.reset();
            XContentBuilder b = channel.newBuilder();
            b.startObject();
            b.field("node", nodeName.get());
            if (link == null) {
                b.field("ready", false);
            } else {
                long calls = link.calls.sum();
                b.field("ready", true);
                b.field("target", link.target());
                b.field("deadline_ms", link.deadline().millis());
                b.field("fail_on_error", link.failOnError());
                b.field("channel_state", link.channelState().name());
                b.field("warmed", link.warmed());
                b.field("calls", calls);
                b.field("reranked", link.reranked.sum());
                b.field("partial", link.partial.sum());
                b.field("failed", link.failed.sum());
                b.field("mean_call_ms", calls == 0 ? 0.0 : link.callMicros.sum() / 1000.0 / calls);
                b.startObject("fallback");
                long total = 0;
                for (var e : link.fallbackCounts().entrySet()) {
                    b.field(e.getKey(), e.getValue());
                    total += e.getValue();
                }
                b.endObject();
                b.field("fallback_total", total);
                b.field("timings", link.timings.summary());
            }
            b.endObject();
            channel.sendResponse(new RestResponse(RestStatus.OK, b));
        };
    }
}
