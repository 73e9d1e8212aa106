/*
 * group_done.h - work a completion callback hands to the end of its group.
 *
 * The writer (writer.c) answers the jobs of one committed group one after
 * the other on its thread. Something every answered job wants done once,
 * such as waking the dispatcher after accepts, is cheaper done once per
 * group than once per job: a callback asks for it with store_group_done,
 * and the writer runs it after the group's last callback. Called anywhere
 * else (a backend or a test answering on another thread, or outside a
 * callback), it runs at once, so the caller's effect never depends on where
 * its callback ran.
 */
#ifndef HR_STORE_GROUP_DONE_H
#define HR_STORE_GROUP_DONE_H

/* Runs fn(arg) once after the callbacks of the group being answered on this
 * thread (the same fn and arg asked for twice run once), or now when this
 * thread is not answering a group. fn must not block. */
void store_group_done(void (*fn)(void *arg), void *arg);

#endif
