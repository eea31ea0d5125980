/* `vesta serve`: the one-command cluster (router + N workers as supervised child processes). */
#ifndef VESTA_SERVE_H
#define VESTA_SERVE_H

/* argv[0] is the command name ("serve"); the options follow. Returns the exit status. */
int vesta_cmd_serve(int argc, char **argv);

#endif
