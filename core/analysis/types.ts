/** The model dimensions analysis code needs (a subset of ModelInfo). */
export interface EngineInfoShape {
  layers: number;
  heads: number;
}
