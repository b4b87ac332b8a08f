/* a, version 1 (see main.c) */
int next_id(void)
{
    static int id = 0; /* changed initialiser: no effect on the live id */
    id += 10;
    return id;
}

int calls(void)
{
    static int n = 0;
    n += 1;
    return n;
}
