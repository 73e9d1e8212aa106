/*
 * group_done.h - work a completion callback hands to the end of its group.
 *
 * The writer (writer.c) answers the jobs of one committed group one after
 * the other on its thread. Something every answered job wants done once,
 * such as waking the dispatcher after accepts, is cheaper done once per
 * group than once per job: a callback asks for it with store_group_done,
 * and the writer runs it after the group's last callback (before it takes
 * the next group). Asked anywhere else (a backend or a test answering on
 * another thread, or outside a callback), nothing is queued and the caller
 * does the work itself, so its effect never depends on where its callback
 * ran.
 */
#ifndef HR_STORE_GROUP_DONE_H
#define HR_STORE_GROUP_DONE_H

/* Asks for fn(arg) to run once after the callbacks of the group this thread
 * is answering (fn must not block). 1: queued by this call; 0: already
 * queued for this group (it runs once for both); -1: this thread is not
 * answering a group, or the group's table is full: nothing is queued, the
 * caller does it now. */
int store_group_done(void (*fn)(void *arg), void *arg);

#endif
