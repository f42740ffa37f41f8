import type { Engine } from './engine/engine';
import type { WeightVariants } from './engine/variants';

/** The file-system port the analysis needs; Node implements it for the CLI and the extension host. */
export interface Workspace {
  /** Reads a text file; throws a UserError naming the path when it is missing. */
  readText(path: string): Promise<string>;
  exists(path: string): Promise<boolean>;
  /** Resolves `rel` against the folder of the file `from`. */
  resolve(from: string, rel: string): string;
  /** A path for messages (relative to the workspace root when inside it). */
  display(path: string): string;
  loadEngine(modelPath: string): Promise<Engine>;
  sha256(path: string): Promise<string>;
  /** The model file's weights in memory, for engines with some initializers replaced (prune checks); where supported. */
  modelVariants?(modelPath: string): Promise<WeightVariants>;
}
