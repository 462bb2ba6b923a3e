declare module "*.o" {
  const path: string;
  export default path;
}
