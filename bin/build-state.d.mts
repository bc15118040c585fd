export declare const BUILD_STAMP: string;
export declare function newestSourceMtimeMs(dir: string): number;
export declare function compiledBuild(root: string): { fresh: true; main: string } | { fresh: false; why: string };
