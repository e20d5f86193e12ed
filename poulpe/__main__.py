from poulpe.cli import main

main()
