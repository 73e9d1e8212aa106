/* nosym.c - a shared object that is not a plugin (no herald_plugin). */
int nosym_answer(void);
int nosym_answer(void)
{
	return 42;
}
