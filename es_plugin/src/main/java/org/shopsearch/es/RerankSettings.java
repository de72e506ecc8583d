package org.shopsearch.es;

import org.elasticsearch.common.settings.Setting;
import org.elasticsearch.common.settings.Setting.Property;
import org.elasticsearch.core.TimeValue;

import java.util.List;

/**
 * The plugin's node settings: where the reranker is and how long a shard may wait for it.
 * They come from elasticsearch.yml or the cluster settings API, never from a search request,
 * so a search cannot point the node at an arbitrary address.
 */
public final class RerankSettings {
    private RerankSettings() {}

    /** host:port of the reranker gRPC service (the same one the page calls). */
    public static final Setting<String> TARGET = Setting.simpleString(
        "shopsearch.rerank.target", "127.0.0.1:50051", RerankSettings::validateTarget, Property.NodeScope, Property.Dynamic);

    /** Each shard's call deadline; the call blocks a search thread, so this stays short. */
    public static final Setting<TimeValue> DEADLINE = Setting.timeSetting(
        "shopsearch.rerank.deadline", TimeValue.timeValueMillis(300), TimeValue.timeValueMillis(1),
        Property.NodeScope, Property.Dynamic);

    /** false (default): a failed call keeps the BM25 order; true: the shard fails instead. */
    public static final Setting<Boolean> FAIL_ON_ERROR = Setting.boolSetting(
        "shopsearch.rerank.fail_on_error", false, Property.NodeScope, Property.Dynamic);

    /** The largest window_size a search may ask for (the service's own limit is 1000 candidates). */
    public static final Setting<Integer> MAX_WINDOW = Setting.intSetting(
        "shopsearch.rerank.max_window", 500, 1, 1000, Property.NodeScope, Property.Dynamic);

    /** The _source field sent as the candidate's text when a search sets send_text. */
    public static final Setting<String> TEXT_FIELD = Setting.simpleString(
        "shopsearch.rerank.text_field", "title", Property.NodeScope, Property.Dynamic);

    /** Longest text sent per candidate (the service refuses longer ones). */
    public static final Setting<Integer> MAX_TEXT_CHARS = Setting.intSetting(
        "shopsearch.rerank.max_text_chars", 1000, 1, Property.NodeScope, Property.Dynamic);

    public static List<Setting<?>> all() {
        return List.of(TARGET, DEADLINE, FAIL_ON_ERROR, MAX_WINDOW, TEXT_FIELD, MAX_TEXT_CHARS);
    }

    static void validateTarget(String target) {
        parsePort(target);
    }

    /** The port of "host:port"; IllegalArgumentException with one line otherwise. */
    static int parsePort(String target) {
        int colon = target.lastIndexOf(':');
        if (colon <= 0 || colon == target.length() - 1) {
            throw new IllegalArgumentException("shopsearch.rerank.target must be host:port, got [" + target + "]");
        }
        try {
            int port = Integer.parseInt(target.substring(colon + 1));
            if (port < 1 || port > 65535) throw new NumberFormatException();
            return port;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("shopsearch.rerank.target must be host:port with a port 1-65535, got [" + target + "]");
        }
    }

    static String parseHost(String target) {
        String host = target.substring(0, target.lastIndexOf(':'));
        return host.startsWith("[") && host.endsWith("]") ? host.substring(1, host.length() - 1) : host;
    }
}
