import com.almworks.sqlite4java.SQLite;
import com.almworks.sqlite4java.SQLiteConnection;
import com.almworks.sqlite4java.SQLiteStatement;
import java.io.File;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * EXPLAIN QUERY PLAN of each statement on a database, with the SQLite that DynamoDB Local
 * bundles (sqlite4java), not the test's Python one: the planners differ. Run as a single-file
 * source program: java -cp sqlite4java.jar -Djava.library.path=... QueryPlan.java DB SQL...
 * Prints "sqlite VERSION", then one line per statement: its plan's details joined by " | ".
 */
public class QueryPlan {
    public static void main(String[] args) throws Exception {
        Logger.getLogger("com.almworks.sqlite4java").setLevel(Level.OFF);
        SQLiteConnection db = new SQLiteConnection(new File(args[0]));
        db.open(false);
        try {
            System.out.println("sqlite " + SQLite.getSQLiteVersion());
            for (int i = 1; i < args.length; i++) {
                SQLiteStatement plan = db.prepare("EXPLAIN QUERY PLAN " + args[i]);
                StringBuilder line = new StringBuilder();
                while (plan.step()) {
                    line.append(line.length() == 0 ? "" : " | ").append(plan.columnString(3));
                }
                plan.dispose();
                System.out.println(line);
            }
        } finally {
            db.dispose();
        }
    }
}
