// Starts DynamoDB Local exactly as its own main class does, but listening on one address
// (127.0.0.1 unless -Dripple.host=... says otherwise). DynamoDB Local has no flag for this:
// its Jetty server listens on every interface. The command-line arguments are DynamoDB
// Local's own (-inMemory, -dbPath, -sharedDb, -port, -disableTelemetry ...).
//
// Built by `python -m ripple_local.tools install` with the JDK's javac against the jar.

import java.lang.reflect.Field;
import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import software.amazon.dynamodb.services.local.main.ServerRunner;
import software.amazon.dynamodb.services.local.server.DynamoDBProxyServer;

public final class LoopbackDynamoDBLocal {
  private LoopbackDynamoDBLocal() {}

  public static void main(String[] args) throws Exception {
    String host = System.getProperty("ripple.host", "127.0.0.1");
    DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
    Field field = DynamoDBProxyServer.class.getDeclaredField("server");
    field.setAccessible(true);
    Server server = (Server) field.get(proxy);
    for (Connector connector : server.getConnectors()) {
      ((ServerConnector) connector).setHost(host);
    }
    proxy.start();
    proxy.join();
  }
}
