package org.shopsearch.es;

import org.elasticsearch.cluster.metadata.IndexNameExpressionResolver;
import org.elasticsearch.cluster.node.DiscoveryNodes;
import org.elasticsearch.common.io.stream.NamedWriteableRegistry;
import org.elasticsearch.common.settings.ClusterSettings;
import org.elasticsearch.common.settings.IndexScopedSettings;
import org.elasticsearch.common.settings.Setting;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.common.settings.SettingsFilter;
import org.apache.lucene.util.SetOnce;
import org.elasticsearch.features.NodeFeature;
import org.elasticsearch.node.Node;
import org.elasticsearch.plugins.ActionPlugin;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.plugins.SearchPlugin;
import org.elasticsearch.rest.RestController;
import org.elasticsearch.rest.RestHandler;
import org.elasticsearch.search.fetch.FetchSubPhase;

import java.util.Collection;
import java.util.List;
import java.util.function.Predicate;
import java.util.function.Supplier;

/**
 * The `shopsearch` rescorer, each hit's structured outcome (the `shopsearch_outcome` search ext and its fetch
 * sub-phase), the node settings and the `_shopsearch/stats` endpoint.
 *
 * The plugin owns the node's link to the reranker service (created with the node's components)
 * and hands it to the rescorer, its builder and the stats handler as a supplier: the rescorer
 * and REST registrations are read before components exist, so they get the supplier, not the link.
 */
public class ShopsearchRerankPlugin extends Plugin implements SearchPlugin, ActionPlugin {
    private final Settings settings;
    private final SetOnce<RerankerLink> link = new SetOnce<>();
    private final Supplier<RerankerLink> links = link::get;
    private final ShopsearchRescorer rescorer = new ShopsearchRescorer(links);

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
        link.set(new RerankerLink(settings, services.clusterService().getClusterSettings()));
        return List.of();
    }

    @Override
    public List<RescorerSpec<?>> getRescorers() {
        return List.of(new RescorerSpec<>(ShopsearchRescorerBuilder.NAME, in -> new ShopsearchRescorerBuilder(in, rescorer),
            parser -> ShopsearchRescorerBuilder.fromXContent(parser, rescorer)));
    }

    @Override
    public List<SearchExtSpec<?>> getSearchExts() {
        return List.of(new SearchExtSpec<>(OutcomeSearchExt.NAME, OutcomeSearchExt::new, OutcomeSearchExt::fromXContent));
    }

    @Override
    public List<FetchSubPhase> getFetchSubPhases(FetchPhaseConstructionContext context) {
        return List.of(new OutcomeFetchSubPhase(rescorer));
    }

    @Override
    public Collection<RestHandler> getRestHandlers(Settings settings, NamedWriteableRegistry registry, RestController controller,
                                                   ClusterSettings clusterSettings, IndexScopedSettings indexScopedSettings,
                                                   SettingsFilter settingsFilter, IndexNameExpressionResolver resolver,
                                                   Supplier<DiscoveryNodes> nodes, Predicate<NodeFeature> clusterSupportsFeature) {
        String name = Node.NODE_NAME_SETTING.get(settings);
        return List.of(new RestStatsAction(() -> name, links));
    }

    @Override
    public void close() {
        RerankerLink open = link.get();
        if (open != null) open.close();
    }
}
