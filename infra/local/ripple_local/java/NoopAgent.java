import java.lang.instrument.Instrumentation;

/**
 * Stand-in for LocalStack's ddb-local-loader agent jar.
 *
 * LocalStack always starts DynamoDB Local with -javaagent:<its dir>/ddb-local-loader-0.1.jar.
 * The real agent (downloaded from GitHub by LocalStack's installer) uses javassist to lift
 * DynamoDB Local's limit of 20 GSIs per table. We do not need that, and cannot download it,
 * so this agent does nothing: the JVM only needs a jar whose manifest names a Premain-Class.
 */
public final class NoopAgent {
  private NoopAgent() {}

  public static void premain(String args, Instrumentation inst) {
    // intentionally empty: the JVM only needs an agent jar to load
  }

  public static void agentmain(String args, Instrumentation inst) {
    // intentionally empty: the JVM only needs an agent jar to load
  }
}
