/**
 * A course server opens on nbgrader's assignment list.
 *
 * The server puts its start's id into the page config (`aifactoryCourseStart`, set by
 * aifactory.extensions.workbench.course_lab only on a course's profile for one of its members). The
 * first page of each start opens the list; later pages (a reload, another tab) keep the layout the
 * user left, so a student who closed the list or opened a notebook is not sent back to it.
 */
import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { PageConfig } from '@jupyterlab/coreutils';

export const START_OPTION = 'aifactoryCourseStart';
export const OPEN_ASSIGNMENTS = 'nbgrader:open-assignment-list';

/** Remembered per server (its base URL) in the browser: the last start whose list was opened. */
function seenKey(): string {
  return `aifactory:course-start:${PageConfig.getBaseUrl()}`;
}

function alreadyOpened(start: string): boolean {
  try {
    return window.localStorage.getItem(seenKey()) === start;
  } catch {
    return false; // storage refused (privacy settings): open it, once per page
  }
}

function remember(start: string): void {
  try {
    window.localStorage.setItem(seenKey(), start);
  } catch {
    // nothing to remember with
  }
}

export const coursePlugin: JupyterFrontEndPlugin<void> = {
  id: '@aifactory/workbench:course-start',
  description: "A course server opens on nbgrader's assignment list, once per start.",
  autoStart: true,
  optional: [ILabShell],
  activate: (app: JupyterFrontEnd, labShell: ILabShell | null) => {
    const start = PageConfig.getOption(START_OPTION);
    // JupyterLab only: Notebook's pages (a notebook, the file tree) keep their own single view.
    if (!labShell || !start || alreadyOpened(start)) {
      return;
    }
    // After the layout is restored (the list would otherwise be replaced by the saved one), and once
    // nbgrader's plugin has registered its command.
    const open = async () => {
      remember(start);
      await app.commands.execute(OPEN_ASSIGNMENTS);
    };
    void app.restored.then(() => {
      if (app.commands.hasCommand(OPEN_ASSIGNMENTS)) {
        void open();
        return;
      }
      const added = (_: unknown, change: { id: string | undefined; type: string }) => {
        if (change.type === 'added' && change.id === OPEN_ASSIGNMENTS) {
          app.commands.commandChanged.disconnect(added);
          void open();
        }
      };
      app.commands.commandChanged.connect(added);
    });
  }
};
