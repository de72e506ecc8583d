package org.shopsearch.es;

import io.grpc.EquivalentAddressGroup;
import io.grpc.NameResolver;
import io.grpc.NameResolverProvider;
import io.grpc.NameResolverRegistry;
import io.grpc.Status;

import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.URI;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Set;

/**
 * Where the reranker's replicas are, as {@code shopsearch.rerank.target} names them:
 * <ul>
 *   <li>{@code host:port}: one service;</li>
 *   <li>{@code host:port,host:port,...}, optionally written {@code ipv4:host:port,host:port} (or
 *       {@code ipv6:[addr]:port,...}) as the Python client's targets are (Settings.resolved_rerank_target,
 *       what the local node is given for the demo's replicas): several replicas, each address given;</li>
 *   <li>{@code dns:///name:port}: every address the name resolves to (docker-compose's scaled service).</li>
 * </ul>
 * A list is resolved by {@link ListResolverProvider}, a gRPC name resolver that hands the channel the
 * addresses as written; gRPC's own round_robin policy then balances over them (RerankerLink).
 */
final class RerankTarget {
    static final String LIST_SCHEME = "shopsearch-list";
    private static final String DNS = "dns:";
    private static final String IPV4 = "ipv4:";
    private static final String IPV6 = "ipv6:";

    private RerankTarget() {}

    /** Whether the target may stand for more than one replica (then health checks pick among them). */
    static boolean namesSeveral(String target) {
        return target.startsWith(DNS) || target.contains(",");
    }

    /** The channel's target: the DNS one as given, a list through the list resolver. Validates. */
    static String channelTarget(String target) {
        if (target.startsWith(DNS)) {
            String name = target.substring(DNS.length());
            name = name.startsWith("///") ? name.substring(3) : name;
            RerankSettings.parsePort(name, target);
            return DNS + "///" + name;
        }
        addresses(target);  // validates every entry
        return LIST_SCHEME + ":" + strip(target);
    }

    /** Each host:port of a list target, in order, not yet looked up; IllegalArgumentException (one line) otherwise. */
    static List<InetSocketAddress> addresses(String target) {
        List<InetSocketAddress> out = new ArrayList<>();
        for (String entry : strip(target).split(",", -1)) {
            String address = entry.trim();
            int port = RerankSettings.parsePort(address, target);
            out.add(InetSocketAddress.createUnresolved(RerankSettings.parseHost(address), port));
        }
        return out;
    }

    private static String strip(String target) {
        if (target.startsWith(IPV4)) return target.substring(IPV4.length());
        return target.startsWith(IPV6) ? target.substring(IPV6.length()) : target;
    }

    private static boolean registered;  // guarded by the class (register)

    /** Registers the list resolver with gRPC once per JVM (before the first channel is built). */
    static synchronized void register() {
        if (registered == false) {
            NameResolverRegistry.getDefaultRegistry().register(new ListResolverProvider());
            registered = true;
        }
    }

    /** gRPC name resolution for {@code shopsearch-list:host:port,host:port}: the addresses as written. */
    static final class ListResolverProvider extends NameResolverProvider {
        @Override
        protected boolean isAvailable() {
            return true;
        }

        @Override
        protected int priority() {
            return 5;
        }

        @Override
        public String getDefaultScheme() {
            return LIST_SCHEME;
        }

        @Override
        public NameResolver newNameResolver(URI targetUri, NameResolver.Args args) {
            if (LIST_SCHEME.equals(targetUri.getScheme()) == false) return null;
            return new ListResolver(targetUri.getSchemeSpecificPart());
        }

        @Override
        public Collection<Class<? extends SocketAddress>> getProducedSocketAddressTypes() {
            return Set.of(InetSocketAddress.class);
        }
    }

    private static final class ListResolver extends NameResolver {
        private final String list;
        private Listener2 listener;

        ListResolver(String list) {
            this.list = list;
        }

        @Override
        public String getServiceAuthority() {
            return "shopsearch-reranker";
        }

        @Override
        public void start(Listener2 listener) {
            this.listener = listener;
            resolve();
        }

        @Override
        public void refresh() {
            resolve();  // host names are looked up again (a replica moved)
        }

        private void resolve() {
            List<EquivalentAddressGroup> groups = new ArrayList<>();
            for (InetSocketAddress given : addresses(list)) {
                InetSocketAddress address = new InetSocketAddress(given.getHostString(), given.getPort());
                if (address.isUnresolved()) {
                    listener.onError(Status.UNAVAILABLE.withDescription("cannot resolve reranker host [" + given.getHostString() + "]"));
                    return;
                }
                groups.add(new EquivalentAddressGroup(address));
            }
            listener.onResult(ResolutionResult.newBuilder().setAddresses(groups).build());
        }

        @Override
        public void shutdown() {}
    }
}
