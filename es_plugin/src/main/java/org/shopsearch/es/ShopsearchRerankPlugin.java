package org.shopsearch.es;

import org.elasticsearch.cluster.metadata.IndexNameExpressionResolver;
import org.elasticsearch.cluster.node.DiscoveryNodes;
import org.elasticsearch.common.io.stream.NamedWriteableRegistry;
import org.elasticsearch.common.settings.ClusterSettings;
import org.elasticsearch.common.settings.IndexScopedSettings;
import org.elasticsearch.common.settings.Setting;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.common.settings.SettingsFilter;
import org.elasticsearch.features.NodeFeature;
import org.elasticsearch.node.Node;
import org.elasticsearch.plugins.ActionPlugin;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.plugins.SearchPlugin;
import org.elasticsearch.rest.RestController;
import org.elasticsearch.rest.RestHandler;

import java.util.Collection;
import java.util.List;
import java.util.function.Predicate;
import java.util.function.Supplier;

/** The `shopsearch` rescorer, its node settings and the `_shopsearch/stats` endpoint. */
public class ShopsearchRerankPlugin extends Plugin implements SearchPlugin, ActionPlugin {
    private final Settings settings;
    private RerankerLink link;

    public ShopsearchRerankPlugin(Settings settings) {
        this.settings = settings;
    }

    @Override
    public List<Setting<?>> getSettings() {
        return RerankSettings.all();
    }

    @Override
    public Collection<?> createComponents(PluginServices services) {
        // Opened at node start, so the first search finds a connected channel.
        link = new RerankerLink(settings, services.clusterService().getClusterSettings());
        return List.of();
    }

    @Override
    public List<RescorerSpec<?>> getRescorers() {
        return List.of(new RescorerSpec<>(ShopsearchRescorerBuilder.NAME, ShopsearchRescorerBuilder::new,
            ShopsearchRescorerBuilder::fromXContent));
    }

    @Override
    public Collection<RestHandler> getRestHandlers(Settings settings, NamedWriteableRegistry registry, RestController controller,
                                                   ClusterSettings clusterSettings, IndexScopedSettings indexScopedSettings,
                                                   SettingsFilter settingsFilter, IndexNameExpressionResolver resolver,
                                                   Supplier<DiscoveryNodes> nodes, Predicate<NodeFeature> clusterSupportsFeature) {
        String name = Node.NODE_NAME_SETTING.get(settings);
        return List.of(new RestStatsAction(() -> name));
    }

    @Override
    public void close() {
        if (link != null) link.close();
    }
}
