/* Drives an in-memory SQLite database held in a global across reloads of
 * sqlite3.c: after each reload, one row more and the same queries. Prints
 * one line per step; waits for the image to change between steps. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "hcr.h"
#include "sqlite3.h"

static sqlite3 *db;

static int show(void *tag, int n, char **v, char **names)
{
    (void)names;
    printf("%s:", (const char *)tag);
    for (int i = 0; i < n; i++)
        printf(" %s", v[i] ? v[i] : "NULL");
    printf("\n");
    return 0;
}

static void step(const char *tag, int i)
{
    char sql[256];
    char *err = 0;
    snprintf(sql, sizeof sql,
             "INSERT INTO t VALUES(%d, upper('row %d'), abs(-%d) * 2);"
             "SELECT sqlite_version(), count(*), sum(y), group_concat(name, ',') FROM t;",
             i, i, i);
    if (sqlite3_exec(db, sql, show, (void *)tag, &err) != SQLITE_OK) {
        printf("%s: error: %s\n", tag, err);
        sqlite3_free(err);
    }
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int steps = argc > 1 ? atoi(argv[1]) : 3;
    static const char *tags[] = {"v0", "v1", "v2", "v3", "v4", "v5"};
    if (sqlite3_open(":memory:", &db) != SQLITE_OK)
        return 1;
    sqlite3_exec(db, "CREATE TABLE t(x INTEGER, name TEXT, y INTEGER)", 0, 0, 0);
    step(tags[0], 0);
    for (int s = 1; s <= steps && s < 6; s++) {
        for (int i = 0; i < 24000 && !hcr_has_any_module_changed(); i++)
            usleep(5000);
        int n = hcr_perform_code_reload();
        if (n < 0)
            printf("reload failed: %s\n", hcr_last_error());
        step(tags[s], s);
    }
    sqlite3_close(db);
    return 0;
}
