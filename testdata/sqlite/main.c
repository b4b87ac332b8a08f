/* A small SQLite shell for the live-edit test (tools/tests/sqlite.rs): an
 * in-memory database held in a global, SQL from stdin one statement a line,
 * `reload` reloads the image. */
#include <stdio.h>
#include <string.h>
#include "sqlite3.h"
#include "hcr.h"

sqlite3 *db = 0;

static int row(void *arg, int n, char **v, char **names)
{
    (void)arg; (void)names;
    for (int i = 0; i < n; i++)
        printf("%s%s", i ? " " : "", v[i] ? v[i] : "NULL");
    printf("\n");
    return 0;
}

static void query(const char *sql)
{
    char *err = 0;
    if (sqlite3_exec(db, sql, row, 0, &err) != SQLITE_OK) {
        printf("error: %s\n", err);
        sqlite3_free(err);
    }
}

int main(void)
{
    char line[256];
    if (sqlite3_open(":memory:", &db) != SQLITE_OK)
        return 1;
    query("create table t(x integer)");
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "reload", 6) == 0)
            printf("reloaded %d\n", hcr_perform_code_reload());
        else
            query(line);
        fflush(stdout);
    }
    return 0;
}
