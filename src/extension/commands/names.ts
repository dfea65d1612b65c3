// Names the user types in input boxes: the name proposed first, and the check while typing.
import * as vscode from 'vscode';
import { errorMessage } from '../ui/errors';

/** Validation for names typed in input boxes: the engine's rule, and a warning for a name already in use. */
export function nameValidator(validate: (name: string) => void, taken: string[]): (value: string) => vscode.InputBoxValidationMessage | undefined {
  return (value) => {
    try {
      validate(value);
    } catch (e) {
      return { message: errorMessage(e), severity: vscode.InputBoxValidationSeverity.Error };
    }
    if (taken.includes(value.trim())) {
      return { message: vscode.l10n.t('“{0}” is already in use here; a second one is allowed, and is then named by its id.', value.trim()), severity: vscode.InputBoxValidationSeverity.Warning };
    }
    return undefined;
  };
}

/** `base`, or `base 2`, `base 3`… : the first not taken. */
export function uniqueName(base: string, taken: string[]): string {
  if (!taken.includes(base)) return base;
  for (let i = 2; ; i++) if (!taken.includes(`${base} ${i}`)) return `${base} ${i}`;
}
