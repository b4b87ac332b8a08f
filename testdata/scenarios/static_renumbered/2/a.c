/* a, version 2: the nested k gone; counter gets a static m before n */
int last_nested = -1;
int last_m = -1;

int g(void)
{
    static int k;
    return k++;
}

int counter(void)
{
    static int m = 7;
    static int n;
    last_m = m++;
    return ++n;
}

int last_m_value(void)
{
    return last_m;
}
