/* The hyd tool's commands that go through the daemon (client/cmd_daemon.c). */
#ifndef HYD_CLIENT_CMD_DAEMON_H
#define HYD_CLIENT_CMD_DAEMON_H

/* `echo TEXT | hyd [OPTIONS]`: argv[0] is the program; also dispatches "session"/"status" found
 * after global options. */
int hyd_cmd_complete(int argc, char **argv);
/* argv[0] is the subcommand's name. */
int hyd_cmd_session(int argc, char **argv);
int hyd_cmd_status(int argc, char **argv);

#endif
