package org.shopsearch.es;

import org.elasticsearch.common.settings.Setting;
import org.elasticsearch.common.settings.Setting.Property;
import org.elasticsearch.core.TimeValue;

import java.util.List;

/**
 * The plugin's node settings: where the reranker is and how long a shard may wait for it.
 * They come from elasticsearch.yml or the cluster settings API, never from a search request,
 * so a search cannot point the node at an arbitrary address.
 *
 * The project's node passes every one of them from its Python settings (es_config/local_node.py
 * plugin_node_settings); the defaults here are the Python defaults, for a node set up by hand, and
 * tests/test_plugin_settings.py checks that both lists and defaults agree.
 */
public final class RerankSettings {
    private RerankSettings() {}

    /** Where the reranker service is: host:port, several replicas as host:port,host:port (or
     *  ipv4:host:port,...), or dns:///name:port for every address of a name (RerankTarget). */
    public static final Setting<String> TARGET = Setting.simpleString(
        "shopsearch.rerank.target", "127.0.0.1:50051", RerankSettings::validateTarget, Property.NodeScope, Property.Dynamic);

    /** Tries per call when a replica answers UNAVAILABLE (killed, loading, draining): the next
     *  go to another replica, within the same deadline. 1 turns retries off. */
    public static final Setting<Integer> RETRY_ATTEMPTS = Setting.intSetting(
        "shopsearch.rerank.retry_attempts", 3, 1, 5, Property.NodeScope, Property.Dynamic);

    /** The first pause before a retry; doubled each time, at most ten times this (as the Python client). */
    public static final Setting<TimeValue> RETRY_BACKOFF = Setting.timeSetting(
        "shopsearch.rerank.retry_backoff", TimeValue.timeValueMillis(20), TimeValue.timeValueMillis(1),
        Property.NodeScope, Property.Dynamic);

    /** Each shard's call deadline; the call blocks a search thread, so this stays short. */
    public static final Setting<TimeValue> DEADLINE = Setting.timeSetting(
        "shopsearch.rerank.deadline", TimeValue.timeValueMillis(300), TimeValue.timeValueMillis(1),
        Property.NodeScope, Property.Dynamic);

    /** false (default): a failed call keeps the BM25 order; true: the shard fails instead. */
    public static final Setting<Boolean> FAIL_ON_ERROR = Setting.boolSetting(
        "shopsearch.rerank.fail_on_error", false, Property.NodeScope, Property.Dynamic);

    /** The largest window_size a search may ask for: the project's rerank depth, the number of
     *  candidates the model is served (the service's own limit is 1000 candidates). */
    public static final Setting<Integer> MAX_WINDOW = Setting.intSetting(
        "shopsearch.rerank.max_window", 100, 1, 1000, Property.NodeScope, Property.Dynamic);

    /** The _source field sent as the candidate's text when a search sets send_text. */
    public static final Setting<String> TEXT_FIELD = Setting.simpleString(
        "shopsearch.rerank.text_field", "title", Property.NodeScope, Property.Dynamic);

    /** A keyword field holding each document's item id, read from doc values instead of the `_id`
     *  stored field (WindowIds); a segment or document without it falls back to `_id`. "_id": always `_id`. */
    public static final Setting<String> ID_FIELD = Setting.simpleString(
        "shopsearch.rerank.id_field", "product_id", Property.NodeScope, Property.Dynamic);

    /** Longest text sent per candidate (the service refuses longer ones). */
    public static final Setting<Integer> MAX_TEXT_CHARS = Setting.intSetting(
        "shopsearch.rerank.max_text_chars", 1000, 1, Property.NodeScope, Property.Dynamic);

    public static List<Setting<?>> all() {
        return List.of(TARGET, RETRY_ATTEMPTS, RETRY_BACKOFF, DEADLINE, FAIL_ON_ERROR, MAX_WINDOW, TEXT_FIELD, ID_FIELD, MAX_TEXT_CHARS);
    }

    static void validateTarget(String target) {
        RerankTarget.channelTarget(target);
    }

    /** The port of "host:port", one entry of the setting's value `target` (named in the error);
     *  IllegalArgumentException with one line otherwise. */
    static int parsePort(String address, String target) {
        String expected = "shopsearch.rerank.target must be host:port, host:port,host:port... or dns:///name:port";
        int colon = address.lastIndexOf(':');
        if (colon <= 0 || colon == address.length() - 1) {
            throw new IllegalArgumentException(expected + ", got [" + target + "]");
        }
        try {
            int port = Integer.parseInt(address.substring(colon + 1));
            if (port < 1 || port > 65535) throw new NumberFormatException();
            return port;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(expected + " with ports 1-65535, got [" + target + "]");
        }
    }

    static String parseHost(String target) {
        String host = target.substring(0, target.lastIndexOf(':'));
        return host.startsWith("[") && host.endsWith("]") ? host.substring(1, host.length() - 1) : host;
    }
}
