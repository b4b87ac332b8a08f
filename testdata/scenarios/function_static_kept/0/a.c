/* a, version 0 (see main.c) */
int next_id(void)
{
    static int id = 100;
    return ++id;
}

int calls(void)
{
    static int n = 0;
    return ++n;
}
